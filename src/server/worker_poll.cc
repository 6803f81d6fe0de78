// Worker: the long-polling transport (--poll, --poll_path; AnyCable PRO's docs/long_polling.md).
// A poll session is a connection slot without a socket, owned by the worker that created it
// (its id "<worker>.<random>" names that worker). Its session, subscriptions and queue work as
// for any connection: broadcasts queue shared hub::Wire::kJsonl frames on it, bounded by
// --ws_max_pending_size. Each POST is an HTTP request on some connection of some worker: its
// JSONL commands go to the owner (through the owner's inbox when that is another worker), which
// answers when output is due — at once when messages wait, --poll_flush_interval after the first
// new one, 204 after --poll_interval — with the queued lines as one body, sent back to the worker
// holding the request's connection. Without a poll for --poll_keepalive_timeout the session
// expires; an ended session leaves a tombstone so the next poll gets 401 with its disconnect line.
#include <algorithm>
#include <functional>

#include "common/log.h"
#include "protocol/encode.h"
#include "protocol/transport_encode.h"
#include "server/worker.h"
#include "ws/frame.h"

namespace cable::server {
namespace {
constexpr std::string_view kPollContentType = "text/plain; charset=utf-8";

// The worker index of a poll id, or -1.
int PollWorker(std::string_view id, size_t workers) {
  size_t dot = id.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 4) return -1;
  int w = 0;
  for (size_t i = 0; i < dot; ++i) {
    if (id[i] < '0' || id[i] > '9') return -1;
    w = w * 10 + (id[i] - '0');
  }
  return static_cast<size_t>(w) < workers ? w : -1;
}
}  // namespace

bool Worker::HandlePoll(Conn& c, uint32_t slot, const http::Request& req) {
  std::string body;
  size_t total = req.head_size;
  if (req.method == "POST") {
    switch (ReadRequestBody(c.http->buf, req, static_cast<size_t>(cfg_.poll_max_request_size),
                            &body, &total)) {
      case BodyStatus::kIncomplete:
        return false;
      case BodyStatus::kTooLarge:
      case BodyStatus::kBad: {
        const int status = req.chunked || req.content_length.value_or(0) <=
                                              static_cast<size_t>(cfg_.poll_max_request_size)
                               ? 400
                               : 413;
        RespondHttp(c, slot, req, status, http::StatusText(status), http::kDefaultContentType, {},
                    true);
        c.http->buf.clear();
        PauseReading(c, slot);
        return true;
      }
      case BodyStatus::kOk:
        break;
    }
  } else {
    total += req.content_length.value_or(0);
  }
  auto done = [&](int status) {
    RespondHttp(c, slot, req, status, status == 200 ? "" : http::StatusText(status),
                http::kDefaultContentType, {}, !c.keep_alive);
    c.http->buf.erase(0, std::min(total, c.http->buf.size()));
    if (c.http->deadline_ms != 0) c.http->deadline_ms = now_ms_ + cfg_.handshake_timeout_s * 1000LL;
    if (!c.keep_alive) PauseReading(c, slot);
    return true;
  };
  if (req.method == "OPTIONS") return done(200);  // CORS preflight
  if (req.method != "POST") return done(405);

  std::string poll_id;
  if (auto h = req.Get("x-anycable-poll-id"); h && !h->empty()) poll_id.assign(*h);
  c.http->cors.clear();
  AppendCorsHeaders(req, &c.http->cors);
  const uint64_t token = ConnToken(c, slot);

  if (!poll_id.empty()) {
    c.http->buf.erase(0, std::min(total, c.http->buf.size()));
    c.http->awaiting_poll = true;
    const int owner = PollWorker(poll_id, shared_.workers.size());
    if (owner < 0 || owner == index_) {
      OnPollRequest(index_, token, poll_id, body);
    } else {
      auto* item = new InboxItem();
      item->kind = InboxItem::Kind::kPollRequest;
      item->token = token;
      item->from_worker = index_;
      item->poll_id = std::move(poll_id);
      item->bytes = std::move(body);
      Worker& w = *shared_.workers[static_cast<size_t>(owner)];
      w.inbox_.Push(item);
      w.WakeIfSleeping();
    }
    return true;
  }

  // A new session, on this worker.
  if (stopping_) return done(503);
  const uint32_t p = AllocSlot();
  ++live_conns_;
  Conn& pc = conns_[p];
  pc.transport = Transport::kPoll;
  pc.wire = hub::Wire::kJsonl;
  pc.hold_output = true;
  pc.http = std::make_unique<HttpState>();
  pc.http->poll = std::make_unique<PollState>();
  PollState& ps = *pc.http->poll;
  ps.id = std::to_string(index_) + "." + hub::RandomId(21);
  ps.has_waiter = true;
  ps.initial = true;
  ps.waiter_worker = index_;
  ps.waiter_token = token;
  ps.respond_at_ms = now_ms_ + static_cast<int64_t>(cfg_.poll_interval_s) * 1000;
  polls_[ps.id] = p;
  auto session = NewSession(c, req, c.fd);
  for (std::string_view line : protocol::SplitJsonLines(body)) {
    session->pending_bytes += static_cast<uint32_t>(line.size());
    session->pending.emplace_back(line);
  }
  const std::optional<std::string> jwt = ExtractJwt(cfg_, req, http::UpgradeRequest{});
  c.http->buf.erase(0, std::min(total, c.http->buf.size()));
  c.http->awaiting_poll = true;
  pc.session = std::move(session);
  counters_.long_poll_clients_num.Add(1);
  LOG_DEBUG("sid=%s long-poll session %s", pc.session->sid.c_str(), ps.id.c_str());
  PollTimerAt(pc, p, ps.respond_at_ms);
  StartSession(pc, p, jwt, "");
  return true;
}

void Worker::OnPollRequest(int from_worker, uint64_t token, const std::string& poll_id,
                           const std::string& body) {
  auto it = polls_.find(poll_id);
  Conn* pc = it == polls_.end() ? nullptr : &conns_[it->second];
  if (!pc && shared_.upgrade->holding.load(std::memory_order_acquire)) {
    // New process during a live upgrade: the session may still be on its way from the old one.
    LOG_DEBUG("upgrade: poll for %.64s held until the handover ends", poll_id.c_str());
    held_polls_.push_back({from_worker, token, poll_id, body});
    return;
  }
  if (!pc || !pc->poll_state() || pc->state == ConnState::kClosing ||
      pc->state == ConnState::kFree) {
    counters_.long_poll_stale_requests_total.Add();
    std::string reply;
    if (auto t = poll_tombstones_.find(poll_id); t != poll_tombstones_.end()) {
      reply = std::move(t->second.body);
      poll_tombstones_.erase(t);
    }
    if (reply.empty()) {
      reply = protocol::JsonLine(protocol::EncodeDisconnect("session_expired", false));
    }
    LOG_DEBUG("poll for unknown or ended session %.64s: 401", poll_id.c_str());
    SendPollReply(from_worker, token, 401, "", std::move(reply));
    return;
  }
  const uint32_t slot = it->second;
  Conn& p = *pc;
  PollState& ps = *p.poll_state();
  if (ps.has_waiter) {
    // A newer poll takes over. Clients abort the open one to send commands
    // (@anycable/long-polling), so it gets an empty answer and the lines wait for this one.
    SendPollReply(ps.waiter_worker, ps.waiter_token, ps.initial ? 200 : 204, ps.id, "");
  }
  ps.has_waiter = true;
  ps.initial = false;
  ps.waiter_worker = from_worker;
  ps.waiter_token = token;
  ps.flush_at_ms = 0;
  ps.respond_at_ms = now_ms_ + static_cast<int64_t>(cfg_.poll_interval_s) * 1000;
  Session& s = *p.session;
  for (std::string_view line : protocol::SplitJsonLines(body)) {
    s.pending_bytes += static_cast<uint32_t>(line.size());
    s.pending.emplace_back(line);
  }
  if (p.state == ConnState::kOpen && !s.inflight) DrainPending(p, slot);
  if (p.state != ConnState::kOpen && p.state != ConnState::kConnecting) return;  // closed by it
  if (p.sendq_head < p.sendq.size()) {
    PollAnswer(p, slot, 200);  // messages were waiting: no reason to hold them longer
  } else {
    PollTimerAt(p, slot, ps.respond_at_ms);
  }
}

void Worker::PollAnswer(Conn& p, uint32_t slot, int status) {
  PollState& ps = *p.poll_state();
  if (!ps.has_waiter) return;
  const bool initial = ps.initial;
  ps.has_waiter = false;
  ps.initial = false;
  ps.flush_at_ms = 0;
  ps.respond_at_ms = 0;
  // From now on the session lives --poll_keepalive_timeout without a request.
  ps.expire_at_ms = now_ms_ + static_cast<int64_t>(cfg_.poll_keepalive_timeout_s) * 1000;
  if (p.state == ConnState::kOpen || p.state == ConnState::kConnecting) {
    PollTimerAt(p, slot, ps.expire_at_ms);
  }
  // On this worker the request's connection can be checked first: if its client went away, the
  // queued lines stay for the next poll.
  if (ps.waiter_worker == index_) {
    Conn* h = LookupToken(ps.waiter_token);
    if (!h || h->state != ConnState::kHttp || !h->http || !h->http->awaiting_poll) return;
  }
  std::string body;
  size_t bytes = 0;
  for (size_t i = p.sendq_head; i < p.sendq.size(); ++i) bytes += p.sendq[i]->size();
  body.reserve(bytes);
  for (size_t i = p.sendq_head; i < p.sendq.size(); ++i) {
    hub::Frame* f = p.sendq[i];
    body.append(f->data(), f->size());
    f->Release(index_);
  }
  std::vector<hub::Frame*>().swap(p.sendq);
  p.sendq_head = 0;
  p.head_offset = 0;
  queued_bytes_ -= p.pending_bytes;
  p.pending_bytes = 0;
  if (status == 200 && body.empty() && !initial) status = 204;
  SendPollReply(ps.waiter_worker, ps.waiter_token, status, status == 401 ? "" : ps.id,
                std::move(body));
}

void Worker::SendPollReply(int worker, uint64_t token, int status, const std::string& poll_id,
                           std::string body) {
  if (worker == index_) {
    OnPollReply(token, status, poll_id, std::move(body));
    return;
  }
  if (worker < 0 || static_cast<size_t>(worker) >= shared_.workers.size()) return;
  auto* item = new InboxItem();
  item->kind = InboxItem::Kind::kPollReply;
  item->token = token;
  item->status = status;
  item->poll_id = poll_id;
  item->bytes = std::move(body);
  Worker& w = *shared_.workers[static_cast<size_t>(worker)];
  w.inbox_.Push(item);
  w.WakeIfSleeping();
}

void Worker::OnPollReply(uint64_t token, int status, const std::string& poll_id, std::string body) {
  const uint32_t slot = static_cast<uint32_t>(token);
  Conn* c = LookupToken(token);
  if (!c || c->state != ConnState::kHttp || !c->http || !c->http->awaiting_poll) return;
  c->http->awaiting_poll = false;
  std::vector<std::pair<std::string, std::string>> headers = std::move(c->http->cors);
  c->http->cors.clear();
  if (!poll_id.empty()) headers.emplace_back("X-AnyCable-Poll-ID", poll_id);
  EnqueueRaw(*c, slot,
             http::BuildResponse(status, body, body.empty() ? std::string_view() : kPollContentType,
                                 headers, !c->keep_alive));
  if (c->http->deadline_ms != 0) c->http->deadline_ms = now_ms_ + cfg_.handshake_timeout_s * 1000LL;
  if (!c->keep_alive) {
    PauseReading(*c, slot);
    return;
  }
  OnHttpBytes(*c, slot);  // requests pipelined behind this one
}

void Worker::PollDirty(Conn& p, uint32_t slot) {
  PollState& ps = *p.poll_state();
  // The first request waits for its commands (OnCommandsDrained); a later one for the flush.
  if (!ps.has_waiter || ps.initial || ps.flush_at_ms != 0) return;
  if (cfg_.poll_flush_interval_ms <= 0) {
    PollAnswer(p, slot, 200);
    return;
  }
  ps.flush_at_ms = now_ms_ + cfg_.poll_flush_interval_ms;
  PollTimerAt(p, slot, ps.flush_at_ms);
}

void Worker::PollClosed(Conn& p, uint32_t slot) {
  PollState& ps = *p.poll_state();
  LOG_DEBUG("sid=%s long-poll session %s ended", p.session ? p.session->sid.c_str() : "-",
            ps.id.c_str());
  if (ps.has_waiter) {
    PollAnswer(p, slot, 401);  // the open request gets the last lines (its disconnect)
  }
  if (p.sendq_head < p.sendq.size()) {
    // No request open (or its client is gone): the next poll for this id gets them.
    std::string body;
    for (size_t i = p.sendq_head; i < p.sendq.size(); ++i) {
      body.append(p.sendq[i]->data(), p.sendq[i]->size());
    }
    if (!body.empty()) {
      poll_tombstones_[ps.id] = {
          std::move(body), now_ms_ + static_cast<int64_t>(cfg_.poll_keepalive_timeout_s) * 1000};
    }
  }
  DropUnsentFrames(p);
  BeginClosing(p, slot);  // no socket: the slot is freed at once
}

void Worker::PollTimerAt(Conn& p, uint32_t slot, int64_t ms) {
  poll_timers_.push_back({ms, slot, p.gen});
  std::push_heap(poll_timers_.begin(), poll_timers_.end(), std::greater<>());
}

void Worker::ProcessPollTimers() {
  while (!poll_timers_.empty() && poll_timers_.front().ms <= now_ms_) {
    std::pop_heap(poll_timers_.begin(), poll_timers_.end(), std::greater<>());
    HttpDeadline d = poll_timers_.back();
    poll_timers_.pop_back();
    Conn* p = Lookup(d.slot, d.gen);
    if (!p || !p->poll_state() || p->state == ConnState::kClosing) continue;
    PollState& ps = *p->poll_state();
    if (ps.has_waiter) {
      if ((ps.flush_at_ms != 0 && now_ms_ >= ps.flush_at_ms) ||
          (ps.respond_at_ms != 0 && now_ms_ >= ps.respond_at_ms)) {
        PollAnswer(*p, d.slot, 200);  // 204 when nothing is queued
      }
    } else if (ps.expire_at_ms != 0 && now_ms_ >= ps.expire_at_ms) {
      LOG_DEBUG("sid=%s long-poll session %s expired", p->session->sid.c_str(), ps.id.c_str());
      CloseWithDisconnect(*p, d.slot, "session_expired", false, ws::close_code::kNormal, "");
    }
  }
  if (!poll_tombstones_.empty() && now_ms_ >= next_tombstone_sweep_ms_) {
    next_tombstone_sweep_ms_ = now_ms_ + 1000;
    std::erase_if(poll_tombstones_,
                  [this](const auto& kv) { return kv.second.expires_ms <= now_ms_; });
  }
}

}  // namespace cable::server
