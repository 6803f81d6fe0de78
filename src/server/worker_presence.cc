// Worker: presence (`--broker memory`, extended protocol) — the `join` / `leave` / `presence`
// commands, the `presence` member of a subscribe, RPC CommandResponse.presence, and the expiry of
// disconnected sessions' records. The records live in hub::PresenceStore (shared, mutex-protected,
// never touched by the delivery path); join/leave events are transient publications to the
// presence stream (istate "$p"), delivered as {"type":"presence","identifier":..,"message":..}.
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
  if (!shared_.presence || !stream || !protocol::ParsePresenceRequest(presence_json, &id, &info) ||
      id.empty()) {
    LOG_DEBUG("sid=%s presence join refused for %s: %.200s", s.sid.c_str(), identifier.c_str(),
              presence_json.c_str());
    EnqueueText(c, slot, protocol::EncodePresence(identifier, protocol::EncodePresenceError()));
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
  if (!shared_.presence || !stream) {
    EnqueueText(c, slot, protocol::EncodePresence(cmd.identifier, protocol::EncodePresenceError()));
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
  if (!shared_.presence || !stream) {
    LOG_DEBUG("sid=%s RPC presence %s without a presence stream", s.sid.c_str(), p.type().c_str());
    return;
  }
  std::vector<hub::PresenceStore::Event> events;
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
  if (!s.presence_joined || !shared_.presence) return;
  const std::string* stream = PresenceStreamOf(sub);
  if (!stream) return;
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

}  // namespace cable::server
