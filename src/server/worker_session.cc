// Worker: the Action Cable session — client commands, RPC round trips and their effects.
// Rules from the spec (§5): one command at a time per connection, in arrival order; frames that
// arrive before the welcome wait for it; RPC transmissions are written verbatim.
#include <algorithm>

#include "common/log.h"
#include "server/worker.h"
#include "ws/frame.h"

namespace cable::server {
namespace {
constexpr size_t kMaxPendingInput = 64 * 1024;

void MergeState(StateMap& into, const google::protobuf::Map<std::string, std::string>& from) {
  for (const auto& [k, v] : from) {
    if (v.empty()) {
      into.erase(k);  // empty value deletes the key
    } else {
      into[k] = v;
    }
  }
}

// As anycable-go's protocol.Parse*Response: only SUCCESS and FAILURE are answers; ERROR and any
// value outside the enum (proto3 enums are open, over gRPC and over HTTP's JSON alike) are errors.
bool IsErrorStatus(anycable::Status status) {
  return status != anycable::SUCCESS && status != anycable::FAILURE;
}

std::string EncodeStateJson(const StateMap& state) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : state) {
    if (!first) out += ',';
    first = false;
    protocol::AppendJsonString(out, k);
    out += ':';
    protocol::AppendJsonString(out, v);
  }
  out += '}';
  return out;
}
}  // namespace

void Worker::OnClientMessage(std::string_view message) {
  Conn& c = *cur_conn_;
  if (c.state == ConnState::kClosing || !c.session || c.reading_stopped) return;
  c.pong_deadline_ms = 0;  // any client message answers the ping (--pong_timeout)
  Session& s = *c.session;
  s.pending.emplace_back(message);
  s.pending_bytes += message.size();
  if (s.authenticated && !s.inflight && !s.broker_inflight) DrainPending(c, cur_slot_);
  if (c.state != ConnState::kClosing && c.session && c.session->pending_bytes > kMaxPendingInput) {
    PauseReading(c, cur_slot_);
  }
}

void Worker::DrainPending(Conn& c, uint32_t slot) {
  while (c.state == ConnState::kOpen && c.session && !c.session->inflight &&
         !c.session->broker_inflight && !c.reading_stopped) {
    Session& s = *c.session;
    if (s.pending_head >= s.pending.size()) {
      std::vector<std::string>().swap(s.pending);
      s.pending_head = 0;
      break;
    }
    std::string frame = std::move(s.pending[s.pending_head++]);
    s.pending_bytes -= frame.size();
    ExecuteCommand(c, slot, frame);
  }
  if (c.state != ConnState::kOpen) return;
  MaybeResumeReading(c, slot);
  // A transport that holds its output until the request's commands ran (SSE, long polling).
  if (c.hold_output && !c.session->inflight &&
      c.session->pending_head >= c.session->pending.size()) {
    OnCommandsDrained(c, slot);
  }
}

void Worker::ExecuteCommand(Conn& c, uint32_t slot, const std::string& frame) {
  Session& s = *c.session;
  counters_.client_msg_total.Add();
  auto decoded = decoder_.Decode(frame);
  if (!decoded.ok()) {
    counters_.failed_client_msg_total.Add();
    protocol::DecodeError err = decoded.error();
    LOG_DEBUG("sid=%s invalid client message (%s)", s.sid.c_str(), protocol::DecodeErrorName(err));
    if (err == protocol::DecodeError::kMalformedJson ||
        err == protocol::DecodeError::kNotAnObject || err == protocol::DecodeError::kBadField) {
      // anycable-go stops reading from a connection that sent a frame it cannot decode; the
      // connection stays open for broadcasts and pings until the peer goes away.
      c.reading_stopped = true;
      s.pending.clear();
      s.pending_head = 0;
      s.pending_bytes = 0;
      PauseReading(c, slot);
    }
    return;
  }
  const protocol::ClientCommand& cmd = decoded.value();
  using protocol::CommandType;
  switch (cmd.type) {
    case CommandType::kPing:
      EnqueueText(c, slot, protocol::EncodePong());
      return;
    case CommandType::kPong:
      return;
    case CommandType::kSubscribe:
      if (s.Find(cmd.identifier)) {
        LOG_DEBUG("sid=%s already subscribed to %s", s.sid.c_str(), cmd.identifier.c_str());
        return;
      }
      if (HandleBuiltinSubscribe(c, slot, cmd)) {
        // Confirmed (the subscription exists now): its history follows the confirmation.
        if (!cmd.history.empty() && c.state == ConnState::kOpen && s.Find(cmd.identifier)) {
          HandleHistory(c, slot, cmd.identifier, cmd.history);
        }
        if (s.ext && !cmd.presence.empty() && c.state == ConnState::kOpen) {
          if (SubState* sub = s.Find(cmd.identifier)) PresenceJoin(c, slot, sub, cmd.presence);
        }
        return;
      }
      s.inflight_history = cmd.history;
      s.inflight_presence = s.ext ? cmd.presence : std::string();
      SubmitCommand(c, slot, cmd);
      return;
    case CommandType::kHistory:
      // Go ignores a history command without a "history" member (logged, no reply).
      if (cmd.history.empty()) {
        LOG_DEBUG("sid=%s history command without history", s.sid.c_str());
        return;
      }
      HandleHistory(c, slot, cmd.identifier, cmd.history);
      return;
    case CommandType::kWhisper:
      HandleWhisper(c, slot, cmd);
      return;
    case CommandType::kJoin:
    case CommandType::kLeave:
    case CommandType::kPresence:
      if (!s.ext) break;  // plain actioncable-v1-json: unknown commands
      HandlePresenceCommand(c, slot, cmd);
      return;
    case CommandType::kUnsubscribe:
    case CommandType::kMessage: {
      SubState* sub = s.Find(cmd.identifier);
      if (!sub) {
        LOG_DEBUG("sid=%s unknown subscription %s", s.sid.c_str(), cmd.identifier.c_str());
        return;
      }
      if (cmd.type == CommandType::kUnsubscribe && sub->builtin) {
        RemoveSubscription(s, sub);  // built-in channels unsubscribe locally, without a reply
        return;
      }
      SubmitCommand(c, slot, cmd);
      return;
    }
    default:
      break;
  }
  // Unknown commands and extended-protocol commands this build does not serve.
  counters_.failed_client_msg_total.Add();
  LOG_DEBUG("sid=%s unsupported command %s", s.sid.c_str(), cmd.name.c_str());
}

void Worker::FillEnv(const Conn& c, anycable::Env* env, const SubState* sub) const {
  const Session& s = *c.session;
  env->set_url(s.url);
  for (const auto& [k, v] : s.headers) (*env->mutable_headers())[k] = v;
  for (const auto& [k, v] : s.cstate) (*env->mutable_cstate())[k] = v;
  if (sub && sub->istate) {
    for (const auto& [k, v] : *sub->istate) (*env->mutable_istate())[k] = v;
  }
}

void Worker::SubmitCommand(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd) {
  Session& s = *c.session;
  if (cfg_.norpc) return;  // standalone: subscribes were rejected already, the rest is ignored
  s.used_rpc = true;
  auto call = std::make_shared<rpc::Call>();
  call->kind = rpc::CallKind::kCommand;
  call->sid = s.sid;
  call->owner = ConnToken(c, slot);
  anycable::CommandMessage& m = call->command_request;
  m.set_command(cmd.name);
  m.set_identifier(cmd.identifier);
  m.set_connection_identifiers(s.identifiers);
  if (cmd.type == protocol::CommandType::kMessage) m.set_data(cmd.data);
  FillEnv(c, m.mutable_env(), s.Find(cmd.identifier));
  s.inflight = call;
  s.inflight_type = cmd.type;
  ++outstanding_calls_;
  SubmitRpc(call);
}

void Worker::ProcessInbox() {
  InboxItem* item = inbox_.TakeAll();
  while (item) {
    InboxItem* next = item->next;
    if (item->kind == InboxItem::Kind::kShutdown) {
      StartShutdown();
    } else if (item->kind == InboxItem::Kind::kBrokerReply) {
      OnBrokerReplyItem(std::move(item->broker_reply));
    } else if (item->kind == InboxItem::Kind::kClusterAck) {
      OnClusterAckItem(item->token, item->ok);
    } else if (item->kind == InboxItem::Kind::kPollRequest) {
      OnPollRequest(item->from_worker, item->token, item->poll_id, item->bytes);
    } else if (item->kind == InboxItem::Kind::kPollReply) {
      OnPollReply(item->token, item->status, item->poll_id, std::move(item->bytes));
    } else if (item->kind == InboxItem::Kind::kHandoverBegin) {
      OnHandoverBegin();
    } else if (item->kind == InboxItem::Kind::kHandoverAbort) {
      OnHandoverAbort();
    } else if (item->kind == InboxItem::Kind::kHandoverAck) {
      OnHandoverAckItem(item->token);
    } else if (item->kind == InboxItem::Kind::kAcceptResume) {
      OnAcceptResume();
    } else if (item->kind == InboxItem::Kind::kAdopt) {
      AdoptConnection(item->fd, item->bytes);
    } else {
      rpc::Call& call = *item->call;
      if (call.kind == rpc::CallKind::kDisconnect) {
        --outstanding_disconnects_;
        if (call.outcome != rpc::Outcome::kOk) {
          LOG_DEBUG("sid=%s Disconnect RPC failed: %s", call.sid.c_str(),
                    call.error_message.c_str());
        }
      } else {
        --outstanding_calls_;
        uint32_t slot = static_cast<uint32_t>(call.owner);
        Conn* c = LookupToken(call.owner);
        // A result for a connection that has gone (or moved on) is dropped, except a successful
        // Connect: the app now believes in that connection, so it gets its Disconnect call.
        if (!(c && c->session && c->session->inflight.get() == &call)) {
          if (call.kind == rpc::CallKind::kConnect && call.outcome == rpc::Outcome::kOk &&
              call.connect_response.status() == anycable::SUCCESS) {
            QueueOrphanDisconnect(call);
          }
        } else {
          c->session->inflight.reset();
          if (call.kind == rpc::CallKind::kConnect) {
            OnConnectDone(*c, slot, call);
          } else {
            OnCommandDone(*c, slot, call);
          }
          if (c->state == ConnState::kOpen) DrainPending(*c, slot);
        }
      }
    }
    delete item;
    item = next;
  }
}

void Worker::OnConnectDone(Conn& c, uint32_t slot, rpc::Call& call) {
  Session& s = *c.session;
  const anycable::ConnectionResponse& r = call.connect_response;
  if (call.outcome != rpc::Outcome::kOk || IsErrorStatus(r.status())) {
    LOG_ERROR(
        "sid=%s Connect RPC failed: %s", s.sid.c_str(),
        call.outcome != rpc::Outcome::kOk ? call.error_message.c_str() : r.error_msg().c_str());
    CloseWithFrame(c, slot, ws::close_code::kInternalError, "Auth Error");
    return;
  }
  if (r.status() == anycable::FAILURE) {
    counters_.failed_auths_total.Add();
    LOG_DEBUG("sid=%s authentication failed", s.sid.c_str());
    for (const auto& t : r.transmissions()) EnqueueText(c, slot, t);
    CloseWithFrame(c, slot, ws::close_code::kNormal, "Auth Failed");
    return;
  }
  s.identifiers = r.identifiers();
  if (r.has_env()) MergeState(s.cstate, r.env().cstate());
  s.authenticated = true;
  s.needs_disconnect_rpc = cfg_.disconnect_mode != config::DisconnectMode::kNever;
  c.state = ConnState::kOpen;
  counters_.clients_num.Add(1);
  for (const auto& t : r.transmissions()) EnqueueText(c, slot, t);
  StartPings(c, slot);
}

void Worker::StartPings(Conn& c, uint32_t slot) {
  if (c.ping_period == 0) return;
  // First ping at a random point in [0.5, 1.5) x interval so reconnect storms don't ping in step.
  std::uniform_int_distribution<uint32_t> jitter(c.ping_period / 2,
                                                 c.ping_period + c.ping_period / 2 - 1);
  c.ping_due = tick_ + std::max<uint32_t>(1, jitter(rng_));
  PingWheelInsert(c, slot);
}

void Worker::RemoveSubscription(Session& s, SubState* sub) {
  PresenceLeaveSub(s, sub);
  index_map_.RemoveAll(&sub->sub);
  ForgetPendingHistory(&sub->sub);
  auto it = std::find_if(s.subs.begin(), s.subs.end(),
                         [sub](const std::unique_ptr<SubState>& p) { return p.get() == sub; });
  if (it != s.subs.end()) s.subs.erase(it);
}

void Worker::OnCommandDone(Conn& c, uint32_t slot, rpc::Call& call) {
  Session& s = *c.session;
  const anycable::CommandResponse& r = call.command_response;
  using protocol::CommandType;
  if (call.outcome != rpc::Outcome::kOk || IsErrorStatus(r.status())) {
    // RPC error: no reply frame, nothing recorded or removed (spec §5 items 8-10).
    LOG_ERROR(
        "sid=%s %s RPC failed: %s", s.sid.c_str(), call.command_request.command().c_str(),
        call.outcome != rpc::Outcome::kOk ? call.error_message.c_str() : r.error_msg().c_str());
    return;
  }
  const std::string& identifier = call.command_request.identifier();
  SubState* sub = s.Find(identifier);
  switch (s.inflight_type) {
    case CommandType::kSubscribe: {
      if (r.status() == anycable::SUCCESS && !sub) {
        auto fresh = std::make_unique<SubState>();
        fresh->sub.identifier = identifier;
        fresh->sub.conn_slot = slot;
        fresh->sub.conn_generation = c.gen;
        sub = fresh.get();
        s.subs.push_back(std::move(fresh));
      }
      ApplyCommandResponse(c, slot, r.status() == anycable::SUCCESS ? sub : nullptr, r, true);
      std::string history = std::move(s.inflight_history);
      s.inflight_history.clear();
      std::string presence = std::move(s.inflight_presence);
      s.inflight_presence.clear();
      if (r.status() == anycable::SUCCESS && !history.empty() && c.state == ConnState::kOpen) {
        HandleHistory(c, slot, identifier, history);
      }
      if (r.status() == anycable::SUCCESS && !presence.empty() && c.state == ConnState::kOpen) {
        if (SubState* joined = s.Find(identifier)) PresenceJoin(c, slot, joined, presence);
      }
      return;
    }
    case CommandType::kUnsubscribe: {
      // SUCCESS or FAILURE: the subscription, its streams and its state go regardless.
      if (sub) RemoveSubscription(s, sub);
      ApplyCommandResponse(c, slot, nullptr, r, false);
      return;
    }
    default:
      ApplyCommandResponse(c, slot, sub, r, false);
      return;
  }
}

void Worker::ApplyCommandResponse(Conn& c, uint32_t slot, SubState* sub,
                                  const anycable::CommandResponse& r, bool) {
  Session& s = *c.session;
  // Order (spec §5 item 11): stop streams → streams → istate → cstate → transmissions → disconnect.
  if (sub) {
    if (r.stop_streams()) {
      index_map_.RemoveAll(&sub->sub);
    } else {
      for (const auto& stream : r.stopped_streams()) index_map_.Remove(&sub->sub, stream);
    }
    for (const auto& stream : r.streams()) index_map_.Add(&sub->sub, stream);
    if (r.has_env() && !r.env().istate().empty()) {
      if (!sub->istate) sub->istate = std::make_unique<StateMap>();
      MergeState(*sub->istate, r.env().istate());
      if (sub->istate->empty()) sub->istate.reset();
    }
  }
  if (r.has_env()) MergeState(s.cstate, r.env().cstate());
  for (const auto& t : r.transmissions()) EnqueueText(c, slot, t);
  if (sub && r.has_presence() && c.state == ConnState::kOpen) {
    ApplyRpcPresence(c, slot, sub, r.presence());
  }
  if (r.disconnect()) CloseWithFrame(c, slot, ws::close_code::kAbnormal, "Command Failed");
}

void Worker::QueueDisconnectRpc(Conn& c) {
  Session& s = *c.session;
  if (!s.authenticated || !s.needs_disconnect_rpc) return;
  s.needs_disconnect_rpc = false;
  if (cfg_.disconnect_mode == config::DisconnectMode::kAuto && s.rpc_free_auth && !s.used_rpc) {
    return;  // JWT/noauth session that only used built-in channels: the app has nothing to undo
  }
  if (disconnect_queue_.size() >= static_cast<size_t>(cfg_.disconnect_backlog_size) && !stopping_) {
    counters_.disconnect_dropped_total.Add();
    LOG_WARN("sid=%s disconnect queue full (%d); Disconnect RPC dropped", s.sid.c_str(),
             cfg_.disconnect_backlog_size);
    return;
  }
  auto call = std::make_shared<rpc::Call>();
  call->kind = rpc::CallKind::kDisconnect;
  call->sid = s.sid;
  anycable::DisconnectRequest& d = call->disconnect_request;
  d.set_identifiers(s.identifiers);
  anycable::Env* env = d.mutable_env();
  env->set_url(s.url);
  for (const auto& [k, v] : s.headers) (*env->mutable_headers())[k] = v;
  for (const auto& [k, v] : s.cstate) (*env->mutable_cstate())[k] = v;
  for (const auto& sub : s.subs) {
    d.add_subscriptions(sub->sub.identifier);
    if (sub->istate && !sub->istate->empty()) {
      (*env->mutable_istate())[sub->sub.identifier] = EncodeStateJson(*sub->istate);
    }
  }
  disconnect_queue_.push_back(std::move(call));
  counters_.disconnect_queue_size.Set(static_cast<int64_t>(disconnect_queue_.size()));
}

void Worker::QueueOrphanDisconnect(const rpc::Call& connect) {
  if (cfg_.disconnect_mode == config::DisconnectMode::kNever) return;
  auto call = std::make_shared<rpc::Call>();
  call->kind = rpc::CallKind::kDisconnect;
  call->sid = connect.sid;
  anycable::DisconnectRequest& d = call->disconnect_request;
  d.set_identifiers(connect.connect_response.identifiers());
  anycable::Env* env = d.mutable_env();
  env->set_url(connect.connect_request.env().url());
  *env->mutable_headers() = connect.connect_request.env().headers();
  if (connect.connect_response.has_env()) {
    for (const auto& [k, v] : connect.connect_response.env().cstate()) {
      if (!v.empty()) (*env->mutable_cstate())[k] = v;
    }
  }
  disconnect_queue_.push_back(std::move(call));
  counters_.disconnect_queue_size.Set(static_cast<int64_t>(disconnect_queue_.size()));
}

void Worker::ProcessDisconnectQueue() {
  if (disconnect_queue_.empty()) {
    disconnect_last_ms_ = now_ms_;
    return;
  }
  // Rate limit: this worker's share of --disconnect_rate; unlimited while shutting down.
  double rate =
      static_cast<double>(cfg_.disconnect_rate) / static_cast<double>(shared_.workers.size());
  disconnect_tokens_ += rate * static_cast<double>(now_ms_ - disconnect_last_ms_) / 1000.0;
  disconnect_last_ms_ = now_ms_;
  double burst = std::max(1.0, rate / 10.0);
  if (disconnect_tokens_ > burst) disconnect_tokens_ = burst;
  while (!disconnect_queue_.empty() &&
         (stopping_ || cfg_.disconnect_rate <= 0 || disconnect_tokens_ >= 1.0)) {
    if (!stopping_ && cfg_.disconnect_rate > 0) disconnect_tokens_ -= 1.0;
    rpc::CallPtr call = std::move(disconnect_queue_.front());
    disconnect_queue_.pop_front();
    ++outstanding_disconnects_;
    SubmitRpc(std::move(call));
  }
  counters_.disconnect_queue_size.Set(static_cast<int64_t>(disconnect_queue_.size()));
}

}  // namespace cable::server
