// Worker: presence (`--broker memory`, extended protocol) — the `join` / `leave` / `presence`
// commands, the `presence` member of a subscribe, RPC CommandResponse.presence, and the expiry of
// disconnected sessions' records. The records live in hub::PresenceStore (shared, mutex-protected,
// never touched by the delivery path); join/leave events are transient publications to the
// presence stream (istate "$p"), delivered as {"type":"presence","identifier":..,"message":..}.
//
// `--broker redis|nats`: the records live in the remote store instead, behind the broker thread
// (hub::RemoteBroker). Join / leave / info / restore / disconnect become requests; join and info
// are answered through the inbox (OnRemotePresenceReply: the error reply for a refused or failed
// join, the info frame or the error reply for `presence`, the REST API response). Requests of one
// client are handled in order by the broker thread, so a `presence` after a `join` sees it. The
// events are published by the broker thread through pub/sub (broadcast_type "presence"), so every
// node's subscribers get each exactly once. Live sessions are touched every --presence_ttl / 2.
#include <ctime>

#include "common/log.h"
#include "server/worker.h"

namespace cable::server {

namespace {

const std::string* PresenceStreamOf(const SubState* sub) {
  if (!sub || !sub->istate) return nullptr;
  auto it = sub->istate->find("$p");
  if (it == sub->istate->end() || it->second.empty()) return nullptr;
  return &it->second;
}

}  // namespace

void Worker::PublishPresenceEvents(const std::vector<hub::PresenceStore::Event>& events) {
  const int workers = static_cast<int>(shared_.workers.size());
  for (const auto& e : events) {
    counters_.publications_total.Add();
    PublishLocal(hub::Message::NewPresence(
        e.stream, protocol::EncodePresenceEvent(e.type, e.id, e.info_json), workers));
  }
}

void Worker::PresenceJoin(Conn& c, uint32_t slot, SubState* sub, const std::string& presence_json) {
  Session& s = *c.session;
  const std::string& identifier = sub->sub.identifier;
  const std::string* stream = PresenceStreamOf(sub);
  std::string id;
  std::string info;
  if (!HasPresence() || !stream || !protocol::ParsePresenceRequest(presence_json, &id, &info) ||
      id.empty()) {
    LOG_DEBUG("sid=%s presence join refused for %s: %.200s", s.sid.c_str(), identifier.c_str(),
              presence_json.c_str());
    EnqueueText(c, slot, protocol::EncodePresence(identifier, protocol::EncodePresenceError()));
    return;
  }
  if (RemotePresence()) {
    s.presence_joined = true;  // may hold: the disconnect touches it
    shared_.remote_broker->PresenceJoin(this, ConnToken(c, slot), identifier, *stream, s.sid, id,
                                        info);
    return;
  }
  std::vector<hub::PresenceStore::Event> events;
  if (shared_.presence->Join(*stream, s.sid, id, info, &events) !=
      hub::PresenceStore::JoinResult::kOk) {
    LOG_DEBUG("sid=%s presence limit reached for %s", s.sid.c_str(), stream->c_str());
    EnqueueText(c, slot, protocol::EncodePresence(identifier, protocol::EncodePresenceError()));
    return;
  }
  s.presence_joined = true;
  PublishPresenceEvents(events);
}

void Worker::HandlePresenceCommand(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd) {
  Session& s = *c.session;
  SubState* sub = s.Find(cmd.identifier);
  if (!sub) {
    // Unknown identifier: ignored silently, as every per-subscription command (spec §5 item 8).
    LOG_DEBUG("sid=%s %s for unknown subscription %s", s.sid.c_str(), cmd.name.c_str(),
              cmd.identifier.c_str());
    return;
  }
  using protocol::CommandType;
  if (cmd.type == CommandType::kJoin) {
    PresenceJoin(c, slot, sub, cmd.presence);
    return;
  }
  const std::string* stream = PresenceStreamOf(sub);
  if (!HasPresence() || !stream) {
    EnqueueText(c, slot, protocol::EncodePresence(cmd.identifier, protocol::EncodePresenceError()));
    return;
  }
  if (RemotePresence()) {
    if (cmd.type == CommandType::kLeave) {
      shared_.remote_broker->PresenceLeave(*stream, s.sid);
    } else {
      shared_.remote_broker->PresenceInfo(this, ConnToken(c, slot), cmd.identifier, *stream);
    }
    return;
  }
  if (cmd.type == CommandType::kLeave) {
    // The client's `leave` may carry its id or nothing: the session leaves whatever it holds.
    std::vector<hub::PresenceStore::Event> events;
    shared_.presence->Leave(*stream, s.sid, &events);
    PublishPresenceEvents(events);
    return;
  }
  std::vector<std::pair<std::string, std::string>> records;
  for (auto& r : shared_.presence->Info(*stream)) {
    records.emplace_back(std::move(r.id), std::move(r.info_json));
  }
  EnqueueText(c, slot,
              protocol::EncodePresence(cmd.identifier, protocol::EncodePresenceInfo(records)));
}

void Worker::ApplyRpcPresence(Conn& c, uint32_t slot, SubState* sub,
                              const anycable::PresenceResponse& p) {
  Session& s = *c.session;
  const std::string* stream = PresenceStreamOf(sub);
  if (!HasPresence() || !stream) {
    LOG_DEBUG("sid=%s RPC presence %s without a presence stream", s.sid.c_str(), p.type().c_str());
    return;
  }
  std::vector<hub::PresenceStore::Event> events;
  if (RemotePresence()) {
    if (p.type() == "join" && !p.id().empty()) {
      std::string info = p.info().empty() ? std::string() : message_encoder_.MessageJson(p.info());
      s.presence_joined = true;
      shared_.remote_broker->PresenceJoin(this, ConnToken(c, slot), sub->sub.identifier, *stream,
                                          s.sid, p.id(), std::move(info));
    } else if (p.type() == "leave") {
      shared_.remote_broker->PresenceLeave(*stream, s.sid);
    }
    return;
  }
  if (p.type() == "join") {
    if (p.id().empty()) return;
    std::string info = p.info().empty() ? std::string() : message_encoder_.MessageJson(p.info());
    if (shared_.presence->Join(*stream, s.sid, p.id(), info, &events) !=
        hub::PresenceStore::JoinResult::kOk) {
      LOG_DEBUG("sid=%s presence limit reached for %s", s.sid.c_str(), stream->c_str());
      EnqueueText(c, slot,
                  protocol::EncodePresence(sub->sub.identifier, protocol::EncodePresenceError()));
      return;
    }
    s.presence_joined = true;
  } else if (p.type() == "leave") {
    shared_.presence->Leave(*stream, s.sid, &events);
  }
  PublishPresenceEvents(events);
}

void Worker::PresenceLeaveSub(Session& s, const SubState* sub) {
  if (!s.presence_joined || !HasPresence()) return;
  const std::string* stream = PresenceStreamOf(sub);
  if (!stream) return;
  if (RemotePresence()) {
    shared_.remote_broker->PresenceLeave(*stream, s.sid);
    return;
  }
  std::vector<hub::PresenceStore::Event> events;
  shared_.presence->Leave(*stream, s.sid, &events);
  PublishPresenceEvents(events);
}

void Worker::SweepPresence() {
  if (!shared_.presence) return;
  std::vector<hub::PresenceStore::Event> events;
  shared_.presence->Sweep(static_cast<int64_t>(std::time(nullptr)), &events);
  PublishPresenceEvents(events);
}

void Worker::OnRemotePresenceReply(hub::BrokerReply& reply) {
  const uint32_t slot = static_cast<uint32_t>(reply.token);
  Conn* c = LookupToken(reply.token);
  if (!c) return;  // closed meanwhile
  if (reply.identifier.empty()) {
    // The REST API (an HTTP connection waiting for it).
    if (c->state != ConnState::kHttp || !c->http || !c->http->awaiting_cluster) return;
    c->http->awaiting_cluster = false;
    if (!reply.ok) {
      Respond(*c, slot, 503, http::StatusText(503), !c->keep_alive);
    } else {
      std::vector<std::pair<std::string, std::string>> records;
      for (auto& r : reply.records) records.emplace_back(std::move(r.id), std::move(r.info_json));
      EnqueueRaw(*c, slot,
                 http::BuildResponse(200, protocol::EncodePresenceInfo(records), "application/json",
                                     {}, !c->keep_alive));
    }
    if (c->state == ConnState::kHttp) OnHttpBytes(*c, slot);  // requests pipelined behind it
    return;
  }
  if (!c->session || c->state != ConnState::kOpen) return;
  if (!reply.ok) {
    LOG_DEBUG("sid=%s presence %s failed for %s", c->session->sid.c_str(),
              reply.presence_info ? "info" : "join", reply.identifier.c_str());
    EnqueueText(*c, slot,
                protocol::EncodePresence(reply.identifier, protocol::EncodePresenceError()));
    return;
  }
  if (!reply.presence_info) return;  // joined (its event comes through pub/sub)
  std::vector<std::pair<std::string, std::string>> records;
  for (auto& r : reply.records) records.emplace_back(std::move(r.id), std::move(r.info_json));
  EnqueueText(*c, slot,
              protocol::EncodePresence(reply.identifier, protocol::EncodePresenceInfo(records)));
}

void Worker::TouchRemotePresence() {
  std::vector<std::string> sids;
  for (Conn& c : conns_) {
    if (c.state == ConnState::kOpen && c.session && c.session->presence_joined) {
      sids.push_back(c.session->sid);
    }
  }
  shared_.remote_broker->PresenceTouch(std::move(sids));
}

}  // namespace cable::server
