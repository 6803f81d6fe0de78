// Worker: broadcast delivery (consuming the BroadcastLog), ping ticks and graceful shutdown.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <functional>

#include "common/log.h"
#include "protocol/transport_encode.h"
#include "server/worker.h"
#include "ws/frame.h"

namespace cable::server {

void Worker::PublishLocal(hub::Message* msg) {
  if (HoldForUpgrade(shared_, msg)) return;  // new process during a live upgrade
  if (shared_.broker) {
    // The broker gives it its offset and keeps it in order until the log has room.
    shared_.broker->Publish(msg);
    notify_pending_ = true;
    return;
  }
  // Keep this worker's publications in order: once one waits, the later ones queue behind it.
  if (pending_publish_.empty() && shared_.log->TryPublish(msg)) {
    notify_pending_ = true;
    return;
  }
  pending_publish_.push_back(msg);
}

void Worker::FlushPendingPublications() {
  if (shared_.broker && shared_.broker->HasBacklog()) {
    shared_.broker->Flush();
    notify_pending_ = true;
  }
  while (!pending_publish_.empty() && shared_.log->TryPublish(pending_publish_.front())) {
    pending_publish_.pop_front();
    notify_pending_ = true;
  }
}

void Worker::ProcessBroadcasts() {
  hub::BroadcastLog& log = *shared_.log;
  // Bounded per iteration so sends and completions keep flowing under a flood.
  for (int n = 0; n < 256; ++n) {
    hub::Message* msg = log.Peek(index_);
    if (!msg) break;
    if (msg->kind() == hub::Message::Kind::kPublication) {
      DeliverPublication(*msg);
    } else {
      DeliverRemoteDisconnect(*msg);
    }
    log.Advance(index_);
    msg->Release();
  }
}

void Worker::DeliverPublication(hub::Message& msg) {
  const hub::Bucket* bucket = index_map_.Find(msg.stream());
  if (!bucket) return;
  counters_.broadcast_msg_total.Add();
  // Subscribers of one stream mostly share one identifier: remember the last frame used.
  const std::string* last_identifier = nullptr;
  hub::Wire last_wire = hub::Wire::kWs;
  const uint64_t seq = msg.seq();
  hub::Frame* frame = nullptr;
  hub::Frame* local_frame = nullptr;
  // permessage-deflate subscribers: the message's shared compressed frame (built once for the
  // whole process, on first need), tracked like the plain one.
  const std::string* last_deflated_identifier = nullptr;
  bool last_deflated_ext = false;
  hub::Frame* deflated = nullptr;
  const std::string& exclude = msg.exclude_socket();
  // Copy: enqueueing may close a slow client, which edits this bucket.
  std::vector<hub::Bucket::Entry> entries = bucket->entries;
  for (const hub::Bucket::Entry& e : entries) {
    hub::Subscription* sub = e.sub;
    Conn* c = Lookup(sub->conn_slot, sub->conn_generation);
    if (!c || c->state != ConnState::kOpen) continue;
    if (seq != 0) {
      // Publications this subscription already got for the stream (live, or from a history
      // reply): one already sent by history is not sent again, so a client sees each offset of a
      // stream once, in increasing order.
      hub::Subscription::Link& link = sub->links[e.link];
      if (seq <= link.hi) continue;
      if (link.lo == 0) link.lo = seq;
      link.hi = seq;
    } else if (msg.offset() != 0 && shared_.remote_broker) {
      // Stamped by the remote broker: by offset, and held while a history read is pending.
      if (!AdmitRemote(*c, sub, e.link, msg)) continue;
    }
    if (!exclude.empty() && c->session->sid == exclude) continue;
    // The connection's transport decides the encoding (hub/wire.h); every subscriber with the
    // same (identifier, wire) on every worker shares one frame.
    const hub::Wire wire = c->wire;
    if (c->deflate) {
      const bool ext = wire == hub::Wire::kWsExt;
      if (!last_deflated_identifier || *last_deflated_identifier != sub->identifier ||
          last_deflated_ext != ext) {
        deflated = msg.DeflatedFrameFor(sub->identifier, ext);
        last_deflated_identifier = &sub->identifier;
        last_deflated_ext = ext;
      }
      if (deflated) {
        Enqueue(*c, sub->conn_slot, deflated);
        continue;
      }
      // Cache full (more than 8 identifiers for one publication): the plain frame below.
    }
    if (!last_identifier || *last_identifier != sub->identifier || last_wire != wire) {
      frame = msg.FrameFor(sub->identifier, wire);
      if (!frame) {
        if (local_frame) local_frame->ReleaseCreator();
        local_frame = frame = msg.BuildLocalFrame(sub->identifier, wire);
      }
      last_identifier = &sub->identifier;
      last_wire = wire;
    }
    Enqueue(*c, sub->conn_slot, frame);
  }
  if (local_frame) local_frame->ReleaseCreator();
}

void Worker::DeliverRemoteDisconnect(hub::Message& msg) {
  // Action Cable semantics: every session with these identifiers (anycable-go stops at the first).
  for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
    Conn& c = conns_[slot];
    if (c.state != ConnState::kOpen || !c.session) continue;
    if (c.session->identifiers != msg.identifiers()) continue;
    CloseWithDisconnect(c, slot, "remote", msg.reconnect(), ws::close_code::kNormal,
                        "Closed remotely");
  }
}

void Worker::PingWheelInsert(Conn& c, uint32_t slot) {
  uint32_t bucket = c.ping_due % kWheelSize;
  c.ping_prev = kNil;
  c.ping_next = wheel_[bucket];
  if (c.ping_next != kNil) conns_[c.ping_next].ping_prev = slot;
  wheel_[bucket] = slot;
  c.in_wheel = true;
}

void Worker::PingWheelRemove(Conn& c) {
  if (!c.in_wheel) return;
  c.in_wheel = false;
  uint32_t bucket = c.ping_due % kWheelSize;
  if (c.ping_prev != kNil) {
    conns_[c.ping_prev].ping_next = c.ping_next;
  } else {
    wheel_[bucket] = c.ping_next;
  }
  if (c.ping_next != kNil) conns_[c.ping_next].ping_prev = c.ping_prev;
  c.ping_prev = c.ping_next = kNil;
}

void Worker::SendPing(Conn& c, uint32_t slot) {
  int p = c.ping_precision > 2 ? 0 : c.ping_precision;
  const int t = c.transport == Transport::kWs ? 0 : 1;  // WebSocket frame or SSE event
  if (t == 1 && c.sse_raw) return;                      // raw streams carry data events only
  hub::Frame*& ping = tick_ping_[t][p];
  if (!ping) {
    // One ping frame per tick, transport and precision, shared by every connection pinged in
    // this tick.
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t value = p == 0   ? ts.tv_sec
                    : p == 1 ? static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000
                             : static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
    std::string payload = protocol::EncodePing(value);
    if (t == 1) {
      std::string chunk = protocol::EncodeSseReply(payload, true, false);
      ping = hub::Frame::NewLocal(chunk.size());
      std::memcpy(ping->data(), chunk.data(), chunk.size());
    } else {
      uint8_t header[ws::kMaxHeaderSize];
      size_t hlen = ws::WriteFrameHeader(header, ws::Opcode::kText, payload.size());
      ping = hub::Frame::NewLocal(hlen + payload.size());
      std::memcpy(ping->data(), header, hlen);
      std::memcpy(ping->data() + hlen, payload.data(), payload.size());
    }
  }
  Enqueue(c, slot, ping);
  if (t == 1) return;  // no pong from an SSE client, no native pings
  if (cfg_.pong_timeout_s > 0 && c.pong_deadline_ms == 0 && c.session && c.session->ext) {
    c.pong_deadline_ms = now_ms_ + static_cast<int64_t>(cfg_.pong_timeout_s) * 1000;
    pong_deadlines_.push_back({c.pong_deadline_ms, slot, c.gen});
    std::push_heap(pong_deadlines_.begin(), pong_deadlines_.end(), std::greater<>());
  }
  if (cfg_.enable_native_pings) {
    if (!tick_native_ping_) {
      std::string bytes = ws::BuildFrame(ws::Opcode::kPing, "");
      tick_native_ping_ = hub::Frame::NewLocal(bytes.size());
      std::memcpy(tick_native_ping_->data(), bytes.data(), bytes.size());
    }
    Enqueue(c, slot, tick_native_ping_);
  }
}

void Worker::ProcessTicks() {
  while (now_ms_ >= next_tick_ms_) {
    next_tick_ms_ += kTickMs;
    ++tick_;
    if (handover_ != Handover::kNone) HandoverTick();

    uint32_t bucket = tick_ % kWheelSize;
    uint32_t slot = wheel_[bucket];
    wheel_[bucket] = kNil;
    // Detach the bucket first: connections are re-inserted as they are visited.
    while (slot != kNil) {
      Conn& c = conns_[slot];
      uint32_t next = c.ping_next;
      c.ping_prev = c.ping_next = kNil;
      c.in_wheel = false;
      if (c.ping_due == tick_) {
        if (c.send_inflight &&
            now_ms_ - c.send_started_ms > static_cast<int64_t>(cfg_.ws_write_timeout_s) * 1000) {
          // The peer stopped reading: the write deadline passed (anycable-go: "Ping failed").
          BeginClosing(c, slot);
          ForceClose(c, slot);
          slot = next;
          continue;
        }
        SendPing(c, slot);
        c.ping_due = tick_ + c.ping_period;
      }
      // Sending may have closed a slow client: only open sessions go back into the wheel.
      if (c.state == ConnState::kOpen) PingWheelInsert(c, slot);
      slot = next;
    }
    for (auto& row : tick_ping_) {
      for (auto& f : row) {
        if (f) f->ReleaseCreator();
        f = nullptr;
      }
    }
    if (tick_native_ping_) tick_native_ping_->ReleaseCreator();
    tick_native_ping_ = nullptr;
  }
  // Closing connections whose last frames could not be flushed in time.
  for (size_t i = 0; i < closing_.size();) {
    uint32_t slot = closing_[i];
    Conn& c = conns_[slot];
    if (c.state != ConnState::kClosing) {
      c.closing_listed = false;
      closing_[i] = closing_.back();
      closing_.pop_back();
      continue;
    }
    if (c.close_after_flush && now_ms_ >= c.close_deadline_ms) ForceClose(c, slot);
    ++i;
  }
  ExpireHandshakes();
  ExpirePongs();
  if (!poll_timers_.empty() || !poll_tombstones_.empty()) ProcessPollTimers();
  ReplayHeldPolls();  // live upgrade, new process: once the handover ended
  if (index_ == 0 && shared_.broker && now_ms_ >= next_sweep_ms_) {
    next_sweep_ms_ = now_ms_ + 1000;
    shared_.broker->Sweep();
    SweepPresence();
  }
  if (RemotePresence() && now_ms_ >= next_presence_touch_ms_) {
    next_presence_touch_ms_ = now_ms_ + shared_.remote_broker->presence_ttl_s() * 500LL;
    TouchRemotePresence();
  }
  if (accept_retry_ms_ != 0 && now_ms_ >= accept_retry_ms_ && !stopping_) {
    accept_retry_ms_ = 0;
    for (int l = 0; l < kListenerCount; ++l) ArmAccept(l);
  }
  counters_.streams_num.Set(static_cast<int64_t>(index_map_.streams()));
  counters_.send_queue_bytes.Set(static_cast<int64_t>(queued_bytes_));
}

void Worker::StartShutdown() {
  if (stopping_) return;
  stopping_ = true;
  for (int l = 0; l < kListenerCount; ++l) {
    if (listen_fds_[l] < 0) continue;
    io_uring_sqe* sqe = ring_.GetSqe();
    io_uring_prep_cancel64(sqe, ring::PackTag(ring::Op::kAccept, 0, static_cast<uint32_t>(l)), 0);
    io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kCancel, 0, 0));
    // The cancel matches by tag, so the descriptor can go now: no new connections reach us.
    close(listen_fds_[l]);
    listen_fds_[l] = -1;
  }
  for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
    Conn& c = conns_[slot];
    switch (c.state) {
      case ConnState::kOpen:
      case ConnState::kConnecting:
        CloseWithDisconnect(c, slot, "server_restart", true, ws::close_code::kGoingAway,
                            "Server restart");
        break;
      case ConnState::kHttp:
        BeginClosing(c, slot);
        break;
      default:
        break;
    }
  }
}

bool Worker::ShutdownComplete() const {
  // Cancelled calls still come back; a Connect that succeeded anyway owes a Disconnect.
  if (!disconnect_queue_.empty() || outstanding_disconnects_ > 0 || outstanding_calls_ > 0) {
    return false;
  }
  for (const Conn& c : conns_) {
    if (c.state != ConnState::kFree) return false;
  }
  return true;
}

}  // namespace cable::server
