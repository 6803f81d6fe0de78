// Worker: reliable streams (--broker memory) and the extended protocol's session features —
// `history` replies, session restore, and the --pong_timeout check.
#include <algorithm>
#include <functional>

#include "common/log.h"
#include "server/worker.h"
#include "ws/frame.h"

namespace cable::server {

void Worker::HandleHistory(Conn& c, uint32_t slot, const std::string& identifier,
                           const std::string& history_json) {
  Session& s = *c.session;
  SubState* sub = s.Find(identifier);
  if (!sub) {
    // Unknown identifier: ignored silently, as every per-subscription command (spec §5 item 8).
    LOG_DEBUG("sid=%s history for unknown subscription %s", s.sid.c_str(), identifier.c_str());
    return;
  }
  protocol::HistoryRequest req;
  if (!protocol::ParseHistoryRequest(history_json, &req)) {
    // anycable-go fails to unmarshal the whole command and stops reading the socket; we answer
    // this subscription's request with reject_history and keep the connection.
    counters_.failed_client_msg_total.Add();
    LOG_DEBUG("sid=%s invalid history request: %.200s", s.sid.c_str(), history_json.c_str());
    EnqueueText(c, slot, protocol::EncodeRejectHistory(identifier));
    return;
  }
  if (req.empty()) {
    LOG_DEBUG("sid=%s history request without since or streams", s.sid.c_str());
    return;
  }
  if (shared_.remote_broker) {
    RequestRemoteHistory(c, slot, sub, req);  // answered later (worker_broker.cc)
    return;
  }
  struct StreamBacklog {
    uint32_t link;
    uint64_t horizon;
    std::vector<hub::Message*> messages;
  };
  std::vector<StreamBacklog> backlog;
  bool ok = true;
  for (uint32_t i = 0; i < sub->sub.links.size() && ok; ++i) {
    const std::string& stream = *sub->sub.links[i].bucket->name;
    StreamBacklog b{i, 0, {}};
    const protocol::HistoryPosition* pos = req.Find(stream);
    if (!pos && req.since <= 0) continue;  // no position for this stream and no `since`
    if (!shared_.broker) {
      // Without a broker there is no history: anycable-go's default broker refuses every read
      // (a subscription without streams is still confirmed, as there).
      ok = false;
      break;
    }
    if (pos) {
      ok = shared_.broker->HistoryFrom(stream, pos->epoch, pos->offset, &b.messages, &b.horizon);
    } else {
      ok = shared_.broker->HistorySince(stream, req.since, &b.messages, &b.horizon);
    }
    backlog.push_back(std::move(b));
  }
  if (!ok) {
    for (auto& b : backlog) {
      for (hub::Message* m : b.messages) m->Release();
    }
    LOG_DEBUG("sid=%s history rejected for %s", s.sid.c_str(), identifier.c_str());
    EnqueueText(c, slot, protocol::EncodeRejectHistory(identifier));
    return;
  }
  for (auto& b : backlog) {
    hub::Subscription::Link& link = sub->sub.links[b.link];
    uint64_t first_sent = 0;
    for (hub::Message* m : b.messages) {
      const uint64_t seq = m->seq();
      // Already delivered live on this connection: not again.
      const bool delivered = link.lo != 0 && seq >= link.lo && seq <= link.hi;
      if (!delivered && c.state == ConnState::kOpen) {
        hub::Frame* f = m->BuildLocalFrame(identifier, hub::Positioned(c.wire));
        Enqueue(c, slot, f);
        f->ReleaseCreator();
        if (first_sent == 0) first_sent = seq;
      }
      m->Release();
    }
    // Everything stamped before the read has now been sent or was not asked for: live copies of
    // those publications still in the log are skipped (DeliverPublication).
    if (first_sent != 0 && (link.lo == 0 || first_sent < link.lo)) link.lo = first_sent;
    link.hi = std::max(link.hi, b.horizon);
  }
  if (c.state == ConnState::kOpen) {
    EnqueueText(c, slot, protocol::EncodeConfirmHistory(identifier));
  }
}

bool Worker::TryRestoreSession(Conn& c, uint32_t slot, const std::string& old_sid) {
  if (shared_.remote_broker) {
    // Asked on the broker thread; the connection stays kConnecting until the answer
    // (OnRemoteSessionReply), its frames waiting as behind a Connect RPC.
    shared_.remote_broker->TakeSession(this, ConnToken(c, slot), old_sid);
    return true;
  }
  std::optional<hub::CachedSession> cached = shared_.broker->TakeSession(old_sid);
  if (!cached) {
    LOG_DEBUG("sid=%s no session to restore for %s: connecting", c.session->sid.c_str(),
              old_sid.c_str());
    return false;
  }
  ApplyRestoredSession(c, slot, old_sid, std::move(*cached));
  return true;
}

void Worker::ApplyRestoredSession(Conn& c, uint32_t slot, const std::string& old_sid,
                                  hub::CachedSession cached_session) {
  hub::CachedSession* cached = &cached_session;
  Session& s = *c.session;
  s.identifiers = std::move(cached->identifiers);
  s.cstate = std::move(cached->cstate);
  s.authenticated = true;
  s.rpc_free_auth = cached->rpc_free_auth;
  s.used_rpc = cached->used_rpc;
  s.needs_disconnect_rpc = !cfg_.norpc && cfg_.disconnect_mode != config::DisconnectMode::kNever;
  std::vector<std::string> restored_ids;
  restored_ids.reserve(cached->subs.size());
  for (auto& cs : cached->subs) {
    auto sub = std::make_unique<SubState>();
    sub->sub.identifier = cs.identifier;
    sub->sub.conn_slot = slot;
    sub->sub.conn_generation = c.gen;
    sub->builtin = cs.builtin;
    if (!cs.istate.empty()) sub->istate = std::make_unique<StateMap>(std::move(cs.istate));
    for (const std::string& stream : cs.streams) index_map_.Add(&sub->sub, stream);
    restored_ids.push_back(std::move(cs.identifier));
    s.subs.push_back(std::move(sub));
  }
  if (shared_.presence) {
    // Presence records of the old sid (kept for --presence_ttl) move over without leave/join.
    shared_.presence->Restore(old_sid, s.sid);
    s.presence_joined = shared_.presence->HasSession(s.sid);
  } else if (RemotePresence()) {
    // Same in the cluster-wide store (a no-op when the old sid held nothing or expired).
    shared_.remote_broker->PresenceRestore(old_sid, s.sid);
    s.presence_joined = true;
  }
  c.state = ConnState::kOpen;
  counters_.clients_num.Add(1);
  LOG_DEBUG("sid=%s restored session %s (%zu subscriptions)", s.sid.c_str(), old_sid.c_str(),
            restored_ids.size());
  EnqueueText(c, slot, protocol::EncodeRestoredWelcome(s.sid, restored_ids));
  StartPings(c, slot);
}

void Worker::CommitSessionForRestore(const Conn& c) {
  const Session& s = *c.session;
  if (!s.ext || !(shared_.broker || shared_.remote_broker) || cfg_.sessions_ttl_s <= 0 ||
      !s.restorable) {
    return;
  }
  hub::CachedSession cs;
  cs.identifiers = s.identifiers;
  cs.cstate = s.cstate;
  cs.rpc_free_auth = s.rpc_free_auth;
  cs.used_rpc = s.used_rpc;
  cs.subs.reserve(s.subs.size());
  for (const auto& sub : s.subs) {
    hub::CachedSubscription sc;
    sc.identifier = sub->sub.identifier;
    sc.builtin = sub->builtin;
    if (sub->istate) sc.istate = *sub->istate;
    for (const auto& link : sub->sub.links) sc.streams.push_back(*link.bucket->name);
    cs.subs.push_back(std::move(sc));
  }
  if (shared_.remote_broker) {
    shared_.remote_broker->PutSession(s.sid, std::move(cs));
  } else {
    shared_.broker->CommitSession(s.sid, std::move(cs));
  }
}

void Worker::ExpirePongs() {
  while (!pong_deadlines_.empty() && pong_deadlines_.front().ms <= now_ms_) {
    std::pop_heap(pong_deadlines_.begin(), pong_deadlines_.end(), std::greater<>());
    HttpDeadline d = pong_deadlines_.back();
    pong_deadlines_.pop_back();
    Conn* c = Lookup(d.slot, d.gen);
    if (!c || c->state != ConnState::kOpen || c->pong_deadline_ms != d.ms) continue;
    counters_.no_pong_total.Add();
    LOG_DEBUG("sid=%s no pong within %d s: disconnecting", c->session->sid.c_str(),
              cfg_.pong_timeout_s);
    CloseWithDisconnect(*c, d.slot, "no_pong", true, ws::close_code::kNormal, "No Pong");
  }
}

}  // namespace cable::server
