// Live upgrade, the worker's part (design: src/upgrade/upgrade.h).
//
// Old process: after kHandoverBegin the worker stops accepting, closes its broadcast intake (idle
// HTTP connections closed, the others without keep-alive), waits for every worker to have done so
// and for its log to be drained, then hands over each WebSocket session once it is between frames:
// receive cancelled, session encoded, {socket, record} queued for the controller (main thread),
// connection parked until the ack, then freed without a Disconnect RPC. What cannot move, or does
// not quiesce before --shutdown_timeout, is closed with server_restart. With no connection left the
// worker shuts down.
//
// New process: kAdopt builds the connection from the record (no RPC, no frame) on this worker.
//
// Ownership: everything here runs on the worker's thread and touches only its own connections;
// the outbox (Shared::upgrade) is the only state shared with the controller.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "server/worker.h"
#include "upgrade/upgrade.h"
#include "ws/frame.h"

namespace cable::server {

void Worker::PostItem(InboxItem* item) {
  inbox_.Push(item);
  Wake();
}

void Worker::BeginHandover() {
  auto* item = new InboxItem();
  item->kind = InboxItem::Kind::kHandoverBegin;
  PostItem(item);
}

void Worker::AbortHandover() {
  auto* item = new InboxItem();
  item->kind = InboxItem::Kind::kHandoverAbort;
  PostItem(item);
}

void Worker::OnHandoverAck(uint64_t token) {
  auto* item = new InboxItem();
  item->kind = InboxItem::Kind::kHandoverAck;
  item->token = token;
  PostItem(item);
}

void Worker::Adopt(int fd, std::string record) {
  auto* item = new InboxItem();
  item->kind = InboxItem::Kind::kAdopt;
  item->fd = fd;
  item->bytes = std::move(record);
  PostItem(item);
}

void Worker::ResumeAccepts() {
  auto* item = new InboxItem();
  item->kind = InboxItem::Kind::kAcceptResume;
  PostItem(item);
}

void Worker::OnAcceptResume() {
  accept_held_ = false;
  for (int l = 0; l < 2; ++l) ArmAccept(l);  // takes what queued up meanwhile at once
}

void Worker::OnHandoverBegin() {
  if (stopping_ || handover_ != Handover::kNone) return;
  handover_ = Handover::kActive;
  intake_reported_ = false;
  handover_deadline_ms_ = now_ms_ + static_cast<int64_t>(cfg_.shutdown_timeout_s) * 1000;
  // Stop accepting; the descriptors stay (a failed upgrade resumes accepting on them).
  for (int l = 0; l < 2; ++l) {
    if (listen_fds_[l] < 0 || !accept_armed_[l]) continue;
    io_uring_sqe* sqe = ring_.GetSqe();
    io_uring_prep_cancel64(sqe, ring::PackTag(ring::Op::kAccept, 0, static_cast<uint32_t>(l)), 0);
    io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kCancel, 0, 0));
  }
  HandoverTick();
}

void Worker::OnHandoverAbort() {
  if (handover_ == Handover::kNone) return;
  handover_ = Handover::kNone;
  intake_reported_ = false;
  size_t resumed = 0;
  for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
    Conn& c = conns_[slot];
    if (c.handover == 0 || c.state == ConnState::kFree) continue;
    if (c.transport == Transport::kPoll) {  // socketless: drop the placeholder, nothing to arm
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
      c.handover = 0;
      ++resumed;
      continue;
    }
    if (c.handover == 2) StartPings(c, slot);
    c.handover = 0;
    rearm_.push_back(slot);
    ++resumed;
  }
  if (resumed) LOG_INFO("upgrade: worker %d keeps %zu parked connections", index_, resumed);
  for (int l = 0; l < 2; ++l) ArmAccept(l);
}

void Worker::HandoverTick() {
  UpgradeState& u = *shared_.upgrade;
  AnswerOpenPolls();
  if (!intake_reported_) {
    // Idle HTTP keep-alive connections (broadcasters') move to the new process like sessions do;
    // busy ones are moved once answered; TLS ones are closed when idle. The intake is closed once
    // none is left here and the accept cancellations completed (a connection accepted before them
    // is an HTTP connection like the others).
    bool http_left = false;
    for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
      Conn& c = conns_[slot];
      if (c.state != ConnState::kHttp || c.handover == 2) continue;
      bool idle = c.http && c.http->buf.empty() && !c.http->awaiting_cluster &&
                  !c.http->awaiting_poll && !c.http->sse_deferred && !c.send_inflight &&
                  c.sendq_head == c.sendq.size();
      if (c.tls) {
        if (idle) {
          BeginClosing(c, slot);
          ForceClose(c, slot);
        } else {
          c.keep_alive = false;
          http_left = true;
        }
        continue;
      }
      http_left = true;
      if (c.handover == 0) {
        if (idle) {
          c.handover = 1;
          if (c.recv_armed) {
            io_uring_sqe* sqe = ring_.GetSqe();
            io_uring_prep_cancel64(sqe, ring::PackTag(ring::Op::kRecv, c.gen, slot), 0);
            io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kCancel, 0, 0));
          }
        }
      } else if (!c.recv_armed) {
        if (idle) {
          SendHttpHandover(c, slot);
        } else {
          c.handover = 0;  // a request arrived meanwhile: answer it, move it afterwards
          rearm_.push_back(slot);
        }
      }
    }
    if (!http_left && pending_publish_.empty() && !accept_armed_[0] && !accept_armed_[1]) {
      intake_reported_ = true;
      LOG_DEBUG("upgrade: worker %d closed its intake", index_);
      u.intake_closed.fetch_add(1, std::memory_order_acq_rel);
      for (auto& w : shared_.workers) w->WakeIfSleeping();
    }
  }
  if (now_ms_ >= handover_deadline_ms_) {
    handover_deadline_ms_ = INT64_MAX;
    size_t closed = 0;
    for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
      Conn& c = conns_[slot];
      if (c.handover == 2) continue;  // waits for its ack (or the new process's end)
      if (c.state == ConnState::kOpen || c.state == ConnState::kConnecting) {
        FallbackClose(c, slot, "not quiesced within --shutdown_timeout");
        ++closed;
      } else if (c.state == ConnState::kHttp) {
        BeginClosing(c, slot);
        ForceClose(c, slot);
      }
    }
    if (closed)
      LOG_WARN("upgrade: worker %d closed %zu connections with server_restart", index_, closed);
  }
}

bool Worker::Quiescent(const Conn& c) const {
  if (c.state != ConnState::kOpen || !c.session || c.reading_stopped || c.read_paused) return false;
  // A long-poll session moves between polls; its queued lines go with it.
  const bool poll = c.transport == Transport::kPoll;
  if (poll && c.poll_state()->has_waiter) return false;
  const Session& s = *c.session;
  if (s.broker_inflight) return false;  // a history read or restore at the broker thread
  for (const auto& sub : s.subs) {
    if (pending_history_.count(&sub->sub)) return false;  // live messages held for history
  }
  if (c.tls && !c.tls->session.CompactAndQuiet()) return false;  // e.g. a record received in part
  return !s.inflight && s.pending_head >= s.pending.size() && c.reader.idle() && !c.send_inflight &&
         (poll || c.sendq_head == c.sendq.size());
}

void Worker::FallbackClose(Conn& c, uint32_t slot, const char* why) {
  LOG_DEBUG("sid=%s upgrade: reconnect instead (%s)", c.session ? c.session->sid.c_str() : "-",
            why);
  c.handover = 0;
  counters_.upgrade_fallbacks_total.Add();
  CloseWithDisconnect(c, slot, "server_restart", true, ws::close_code::kGoingAway,
                      "Server restart");
}

void Worker::ProgressHandover() {
  if (stopping_) return;
  AnswerOpenPolls();
  const UpgradeState& u = *shared_.upgrade;
  // The barrier: every worker's intake is closed and this worker delivered all it published.
  bool may_move = intake_reported_ &&
                  u.intake_closed.load(std::memory_order_acquire) >= cfg_.workers &&
                  !shared_.log->HasPending(index_) && pending_publish_.empty() &&
                  !(shared_.broker && shared_.broker->HasBacklog());
  if (may_move && !conns_.empty()) {
    size_t n = conns_.size();
    size_t budget = std::min<size_t>(n, 4096);
    for (size_t i = 0; i < budget; ++i) {
      uint32_t slot = handover_cursor_++ % static_cast<uint32_t>(n);
      Conn& c = conns_[slot];
      if (c.state != ConnState::kOpen || c.handover == 2) continue;
      if (c.handover == 0) {
        // An SSE stream moves once started (its 200 head and held events sent).
        if (c.transport == Transport::kSse && (c.hold_output || c.http)) continue;
        if (c.tls && !c.tls->session.compact()) {
          // TLS 1.2, --ssl_compact=false, or a 1.3 session still on OpenSSL: its state stays in
          // OpenSSL, which cannot hand it over.
          FallbackClose(c, slot, "TLS session not on the compact record layer");
          continue;
        }
        if (!c.session) {
          FallbackClose(c, slot, "no session");
          continue;
        }
        if (!Quiescent(c)) continue;
        c.handover = 1;
        if (c.recv_armed) {
          io_uring_sqe* sqe = ring_.GetSqe();
          io_uring_prep_cancel64(sqe, ring::PackTag(ring::Op::kRecv, c.gen, slot), 0);
          io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kCancel, 0, 0));
        }
      }
      if (c.handover == 1 && !c.recv_armed && !c.send_inflight) {
        if (Quiescent(c)) {
          SendHandover(c, slot);
        } else {
          c.handover = 0;  // bytes that arrived meanwhile made it busy: serve it, retry later
          if (c.transport != Transport::kPoll) rearm_.push_back(slot);
        }
      }
    }
  }
  // Done once counted in the barrier (the other workers wait for every one of them).
  if (intake_reported_ && live_conns_ == 0 && ShutdownComplete()) {
    LOG_INFO("upgrade: worker %d handed over every connection", index_);
    StartShutdown();
  }
}

void Worker::SendHandover(Conn& c, uint32_t slot) {
  const Session& s = *c.session;
  upgrade::ConnRecord r;
  r.token = ConnToken(c, slot);
  r.worker = static_cast<uint32_t>(index_);
  r.sid = s.sid;
  r.identifiers = s.identifiers;
  r.url = s.url;
  r.headers = s.headers;
  r.cstate = s.cstate;
  for (const auto& sub : s.subs) {
    upgrade::SubRecord sr;
    sr.identifier = sub->sub.identifier;
    sr.builtin = sub->builtin;
    if (sub->istate) {
      sr.has_istate = true;
      sr.istate = *sub->istate;
    }
    for (const auto& link : sub->sub.links) sr.streams.push_back(*link.bucket->name);
    r.subs.push_back(std::move(sr));
  }
  r.ext = s.ext;
  r.deflate = c.deflate;
  r.authenticated = s.authenticated;
  r.needs_disconnect_rpc = s.needs_disconnect_rpc;
  r.rpc_free_auth = s.rpc_free_auth;
  r.used_rpc = s.used_rpc;
  r.restorable = s.restorable;
  r.ping_precision = c.ping_precision;
  r.ping_period = c.ping_period;
  ExportPresence(s, &r);
  if (c.transport == Transport::kSse) {
    r.sse = c.wire == hub::Wire::kSse ? upgrade::ConnRecord::Sse::kGet
                                      : upgrade::ConnRecord::Sse::kPost;
    r.sse_raw = c.sse_raw;
  }
  if (c.transport == Transport::kPoll) ExportPoll(c, &r);
  if (c.tls && !ExportTls(c, &r)) {
    FallbackClose(c, slot, "TLS session not quiet");
    return;
  }
  std::string bytes = upgrade::Encode(r);
  WipeTlsSecrets(&r);
  if (bytes.size() > upgrade::kMaxRecord) {
    OPENSSL_cleanse(bytes.data(), bytes.size());
    FallbackClose(c, slot, "session too large");
    return;
  }
  if (c.transport == Transport::kPoll) {
    // The channel carries one descriptor per connection: a socketless poll session sends a
    // placeholder, closed on both sides (here when the slot is freed or the upgrade aborted).
    c.fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (c.fd < 0) {
      FallbackClose(c, slot, "no descriptor for the placeholder");
      return;
    }
  }
  c.handover = 2;
  c.pong_deadline_ms = 0;  // a pong now arrives at the new process
  PingWheelRemove(c);      // parked: nothing is written to it any more
  UpgradeState& u = *shared_.upgrade;
  {
    std::lock_guard<std::mutex> lock(u.outbox_mu);
    u.outbox.emplace_back(c.fd, std::move(bytes));
  }
  eventfd_write(u.outbox_event, 1);
}

void Worker::SendHttpHandover(Conn& c, uint32_t slot) {
  upgrade::ConnRecord r;
  r.token = ConnToken(c, slot);
  r.worker = static_cast<uint32_t>(index_);
  r.http = true;
  r.listener = static_cast<uint8_t>(c.listener);
  r.authenticated = false;
  c.handover = 2;
  UpgradeState& u = *shared_.upgrade;
  {
    std::lock_guard<std::mutex> lock(u.outbox_mu);
    u.outbox.emplace_back(c.fd, upgrade::Encode(r));
  }
  eventfd_write(u.outbox_event, 1);
}

void Worker::OnHandoverAckItem(uint64_t token) {
  Conn* c = LookupToken(token);
  if (!c || c->handover != 2) return;
  uint32_t slot = static_cast<uint32_t>(token);
  counters_.upgrade_handed_over_total.Add();
  if (!c->session) {  // an HTTP keep-alive connection
    FreeSlot(*c, slot);
    return;
  }
  // The new process holds the socket and the session: leave without a frame or a Disconnect.
  Session& s = *c->session;
  for (auto& sub : s.subs) index_map_.RemoveAll(&sub->sub);
  if (s.authenticated) counters_.clients_num.Add(-1);
  if (c->transport == Transport::kSse) counters_.sse_clients_num.Add(-1);
  if (c->transport == Transport::kPoll) counters_.long_poll_clients_num.Add(-1);
  // Its presence records now live in the new process's store (memory broker; a remote store keeps
  // them as they are): dropped here without a leave event.
  if (s.presence_joined && shared_.presence) shared_.presence->Forget(s.sid);
  FreeSlot(*c, slot);
}

bool Worker::ExportTls(const Conn& c, upgrade::ConnRecord* r) const {
  tls::CompactState st;
  if (!c.tls->session.ExportCompact(&st)) return false;
  r->tls = true;
  r->tls_suite = static_cast<uint8_t>(st.suite);
  r->tls_rx_secret.assign(reinterpret_cast<const char*>(st.rx_secret), st.secret_len);
  r->tls_tx_secret.assign(reinterpret_cast<const char*>(st.tx_secret), st.secret_len);
  r->tls_rx_seq = st.rx_seq;
  r->tls_tx_seq = st.tx_seq;
  return true;
}

bool Worker::AdoptTls(Conn& c, upgrade::ConnRecord* r) {
  tls::CompactState st;
  const bool fits = r->tls_rx_secret.size() == r->tls_tx_secret.size() &&
                    r->tls_rx_secret.size() <= sizeof(st.rx_secret);
  if (fits) {
    st.suite = static_cast<tls::Suite>(r->tls_suite);
    st.secret_len = static_cast<uint8_t>(r->tls_rx_secret.size());
    std::memcpy(st.rx_secret, r->tls_rx_secret.data(), st.secret_len);
    std::memcpy(st.tx_secret, r->tls_tx_secret.data(), st.secret_len);
    st.rx_seq = r->tls_rx_seq;
    st.tx_seq = r->tls_tx_seq;
  }
  WipeTlsSecrets(r);
  if (!fits) return false;
  c.tls = std::make_unique<ConnTls>(st);
  if (!c.tls->session.ok()) {
    c.tls.reset();
    return false;
  }
  c.tls->got_bytes = true;
  c.tls->counted_compact = true;  // counted by the process that switched it
  return true;
}

void Worker::WipeTlsSecrets(upgrade::ConnRecord* r) {
  OPENSSL_cleanse(r->tls_rx_secret.data(), r->tls_rx_secret.size());
  OPENSSL_cleanse(r->tls_tx_secret.data(), r->tls_tx_secret.size());
}

void Worker::ExportPresence(const Session& s, upgrade::ConnRecord* r) const {
  if (!s.presence_joined || !HasPresence()) return;
  r->presence_joined = true;
  if (!shared_.presence) return;  // remote store: the membership moves, the records stay put
  for (auto& h : shared_.presence->HeldBy(s.sid)) {
    r->presence.push_back({std::move(h.stream), std::move(h.id), std::move(h.info_json)});
  }
}

void Worker::AdoptPresence(Session& s, const upgrade::ConnRecord& r) {
  if (!r.presence_joined || !HasPresence()) return;
  s.presence_joined = true;
  if (RemotePresence()) {
    // Touched now: the old process's last touch may be up to half a TTL old, and this worker's
    // schedule may be as far from its next one.
    shared_.remote_broker->PresenceTouch({s.sid});
    return;
  }
  if (!shared_.presence) return;
  std::vector<hub::PresenceStore::Held> held;
  held.reserve(r.presence.size());
  for (const auto& p : r.presence) held.push_back({p.stream, p.id, p.info_json});
  shared_.presence->Adopt(s.sid, held);
}

void Worker::AdoptConnection(int fd, const std::string& record) {
  upgrade::ConnRecord r;
  if (!upgrade::Decode(record, &r)) {
    LOG_ERROR("upgrade: malformed connection record (%zu bytes); closing the socket",
              record.size());
    close(fd);
    return;
  }
  uint32_t slot = AllocSlot();
  ++live_conns_;
  Conn& c = conns_[slot];
  c.fd = fd;
  counters_.upgrade_adopted_total.Add();
  if (r.http) {
    // An idle keep-alive connection: its next request is served here.
    c.state = ConnState::kHttp;
    c.listener = static_cast<Listener>(r.listener);
    c.http = std::make_unique<HttpState>();
    WatchHandshake(c, slot);
    ArmRecv(c, slot);
    return;
  }
  if (r.tls && !AdoptTls(c, &r)) {
    LOG_ERROR("upgrade: unusable TLS state in a connection record; closing the socket");
    counters_.tls_errors_total.Add();
    c.state = ConnState::kClosing;
    FreeSlot(c, slot);
    return;
  }
  c.state = ConnState::kOpen;
  c.transport = Transport::kWs;
  c.wire = r.ext ? hub::Wire::kWsExt : hub::Wire::kWs;
  if (r.sse != upgrade::ConnRecord::Sse::kNone) {
    // A started SSE stream: events go on as HTTP chunks; reads only notice the client leaving.
    c.transport = Transport::kSse;
    c.wire = r.sse == upgrade::ConnRecord::Sse::kGet ? hub::Wire::kSse : hub::Wire::kSseFull;
    c.sse_raw = r.sse_raw;
    c.keep_alive = false;
    counters_.sse_clients_num.Add(1);
  }
  c.deflate = r.deflate;
  if (c.deflate) c.reader.set_deflate(true);
  c.ping_precision = r.ping_precision;
  c.ping_period = r.ping_period;
  auto s = std::make_unique<Session>();
  s->sid = std::move(r.sid);
  s->identifiers = std::move(r.identifiers);
  s->url = std::move(r.url);
  s->headers = std::move(r.headers);
  s->cstate = std::move(r.cstate);
  s->ext = r.ext;
  s->authenticated = r.authenticated;
  s->needs_disconnect_rpc = r.needs_disconnect_rpc;
  s->rpc_free_auth = r.rpc_free_auth;
  s->used_rpc = r.used_rpc;
  s->restorable = r.restorable;
  for (auto& rs : r.subs) {
    auto sub = std::make_unique<SubState>();
    sub->sub.identifier = std::move(rs.identifier);
    sub->sub.conn_slot = slot;
    sub->sub.conn_generation = c.gen;
    sub->builtin = rs.builtin;
    if (rs.has_istate) sub->istate = std::make_unique<StateMap>(std::move(rs.istate));
    for (const std::string& stream : rs.streams) index_map_.Add(&sub->sub, stream);
    s->subs.push_back(std::move(sub));
  }
  AdoptPresence(*s, r);
  c.session = std::move(s);
  if (c.session->authenticated) counters_.clients_num.Add(1);
  if (r.poll) {
    AdoptPoll(c, slot, r);
    return;
  }
  StartPings(c, slot);
  ArmRecv(c, slot);
}

void Worker::AnswerOpenPolls() {
  // Old process: a poll held open would keep its HTTP connection busy (and the handover waiting
  // up to --poll_interval): it is answered now with what is queued, and its client polls again —
  // at the new process once its connection moved.
  if (handover_ == Handover::kNone || polls_.empty()) return;
  // Slots first: an answer can serve requests pipelined behind it, which may add to polls_.
  std::vector<uint32_t> slots;
  for (const auto& [id, slot] : polls_) {
    const PollState* ps = conns_[slot].poll_state();
    if (ps && ps->has_waiter) slots.push_back(slot);
  }
  for (uint32_t slot : slots) {
    Conn& p = conns_[slot];
    PollState* ps = p.poll_state();
    if (!ps || !ps->has_waiter || p.state != ConnState::kOpen || !p.session) continue;
    const Session& s = *p.session;
    if (s.inflight || s.pending_head < s.pending.size()) continue;  // answered once drained
    PollAnswer(p, slot, 200);
  }
}

void Worker::ExportPoll(Conn& c, upgrade::ConnRecord* r) {
  const PollState& ps = *c.poll_state();
  r->poll = true;
  r->poll_id = ps.id;
  r->poll_expires_in_ms = static_cast<uint32_t>(std::clamp<int64_t>(
      ps.expire_at_ms - now_ms_, 0, static_cast<int64_t>(cfg_.poll_keepalive_timeout_s) * 1000));
  for (size_t i = c.sendq_head; i < c.sendq.size(); ++i) {
    r->poll_queued.append(c.sendq[i]->data(), c.sendq[i]->size());
  }
}

void Worker::AdoptPoll(Conn& c, uint32_t slot, upgrade::ConnRecord& r) {
  close(c.fd);  // the placeholder
  c.fd = -1;
  c.transport = Transport::kPoll;
  c.wire = hub::Wire::kJsonl;
  c.hold_output = true;
  c.http = std::make_unique<HttpState>();
  c.http->poll = std::make_unique<PollState>();
  PollState& ps = *c.http->poll;
  ps.id = std::move(r.poll_id);
  ps.expire_at_ms = now_ms_ + r.poll_expires_in_ms;
  if (!r.poll_queued.empty()) {
    hub::Frame* f = hub::Frame::NewLocal(r.poll_queued.size());
    std::memcpy(f->data(), r.poll_queued.data(), r.poll_queued.size());
    f->Acquire(index_);
    f->ReleaseCreator();
    c.sendq.push_back(f);
    c.pending_bytes += f->size();
    queued_bytes_ += f->size();
  }
  polls_[ps.id] = slot;
  counters_.long_poll_clients_num.Add(1);
  PollTimerAt(c, slot, ps.expire_at_ms);
}

void Worker::ReplayHeldPolls() {
  if (held_polls_.empty() || shared_.upgrade->holding.load(std::memory_order_acquire)) return;
  std::vector<HeldPoll> held;
  held.swap(held_polls_);
  for (auto& h : held) OnPollRequest(h.from_worker, h.token, h.poll_id, h.body);
}

}  // namespace cable::server
