// Worker: the remote broker (`--broker redis`) — publications stamped on the broker thread, then
// pub/sub; asynchronous `history` replies merged with live delivery; asynchronous session restore.
//
// No gap, no duplicate (per subscription and stream, by offset): a live publication stamped by the
// remote broker carries (epoch, offset) and is sent only when its offset is above the last one
// sent on that link for the same epoch (Link::lo = epoch tag, Link::hi = last offset; remote
// messages have no node seq). While a history read is at the broker thread, live publications
// for that subscription are buffered (PendingHistory); the reply's messages go first, then the
// buffer, both through the same offset filter, then confirm_history. Later client commands wait
// for the reply (Session::broker_inflight), so replies keep the command order. A reply for a
// connection that closed, or a subscription that is gone, is dropped (messages released).
#include <algorithm>
#include <functional>

#include "common/log.h"
#include "server/worker.h"

namespace cable::server {
namespace {

constexpr size_t kMaxBuffered = 10000;  // live publications held behind one history read

// Link::lo for remote-stamped publications: the epoch's tag (high 32 bits, never 0) and the
// lowest offset sent on the link so far (low 32 bits, clamped); Link::hi: the highest offset sent.
// Everything in [low, hi] of that epoch was sent (live delivery is in offset order; a history
// reply fills what is below `low`), so a history reply sends only what is outside the range — as
// the memory broker does with seq ranges, older missed messages may follow a newer live one.
uint64_t EpochTag(const std::string& epoch) {
  return (std::hash<std::string>()(epoch) >> 32) | 0x80000000u;
}
uint64_t LoOf(uint64_t tag, uint64_t low) {
  return (tag << 32) | std::min<uint64_t>(low, 0xffffffffu);
}
bool SameEpoch(const hub::Subscription::Link& l, uint64_t tag) { return (l.lo >> 32) == tag; }
uint64_t LowOf(const hub::Subscription::Link& l) { return l.lo & 0xffffffffu; }

}  // namespace

void Worker::OnBrokerReply(std::unique_ptr<hub::BrokerReply> reply) {
  InboxItem* item = new InboxItem();
  item->kind = InboxItem::Kind::kBrokerReply;
  item->broker_reply = std::move(reply);
  inbox_.Push(item);
  WakeIfSleeping();
}

void Worker::OnBrokerReplyItem(std::unique_ptr<hub::BrokerReply> reply) {
  if (!reply) return;
  if (reply->kind == hub::BrokerReply::Kind::kHistory) {
    OnRemoteHistoryReply(*reply);
  } else if (reply->kind == hub::BrokerReply::Kind::kPresence) {
    OnRemotePresenceReply(*reply);
  } else {
    OnRemoteSessionReply(*reply);
  }
}

void Worker::PublishViaRemoteBroker(Conn& c, uint32_t slot,
                                    std::vector<protocol::BroadcastItem> items) {
  std::vector<hub::AppendEntry> entries;
  // Redis pub/sub on the broker's Redis: the store publishes each stamped publication in the
  // same script that gives it its offset, so pub/sub order is offset order across nodes.
  const bool publish_on_append = cfg_.broker == "redis" && cfg_.pubsub == "redis";
  for (auto& item : items) {
    if (auto* pub = std::get_if<protocol::Publication>(&item)) {
      counters_.publications_total.Add();
      pub->offset = 0;  // positions come from the broker, never from the app
      pub->epoch.clear();
      if (!pub->transient) {
        hub::AppendEntry e{pub->stream, message_encoder_.MessageJson(pub->data), {}, {}, {}};
        if (publish_on_append) {
          // The pub/sub payload around its position, for the store to publish with the append.
          protocol::Publication marked = *pub;
          marked.offset = 1;
          std::string payload = cluster::EncodePublication(marked);
          static constexpr std::string_view kMark = ",\"offset\":1,\"epoch\":\"\"";
          const size_t at = payload.find(kMark);  // never inside the escaped strings before it
          e.channel = pub->stream;
          e.payload_head = payload.substr(0, at + 10);  // up to and including "offset":
          e.payload_tail = payload.substr(at + kMark.size());
        }
        entries.push_back(std::move(e));
      }
    } else {
      counters_.remote_commands_total.Add();
    }
  }
  cluster::Cluster* cluster = shared_.cluster.get();
  const uint64_t token = ConnToken(c, slot);
  // Runs on the broker thread: stamp, then pub/sub carries the stamped publications to every
  // node (this one included); the ack answers the HTTP request on this worker.
  shared_.remote_broker->Append(
      std::move(entries),
      [items = std::move(items), cluster, this, token](
          const std::string& epoch, const std::vector<uint64_t>& offsets, bool published) {
        std::vector<cluster::Outgoing> batch;
        size_t next = 0;
        for (const auto& item : items) {
          if (const auto* pub = std::get_if<protocol::Publication>(&item)) {
            protocol::Publication stamped = *pub;
            if (!pub->transient && next < offsets.size()) {
              stamped.offset = offsets[next++];
              if (stamped.offset != 0 && published) continue;  // on pub/sub already
              if (stamped.offset != 0) stamped.epoch = epoch;
            }
            batch.push_back({pub->stream, cluster::EncodePublication(stamped)});
          } else if (const auto* cmd = std::get_if<protocol::RemoteDisconnect>(&item)) {
            batch.push_back({std::string(), cluster::EncodeRemoteDisconnect(*cmd)});
          }
        }
        if (batch.empty()) {
          OnClusterAck(token, true);
          return;
        }
        cluster->Publish(std::move(batch), this, token);
      });
}

void Worker::RequestRemoteHistory(Conn& c, uint32_t slot, SubState* sub,
                                  const protocol::HistoryRequest& req) {
  Session& s = *c.session;
  std::vector<hub::HistoryQuery> queries;
  for (uint32_t i = 0; i < sub->sub.links.size(); ++i) {
    const std::string& stream = *sub->sub.links[i].bucket->name;
    const protocol::HistoryPosition* pos = req.Find(stream);
    if (!pos && req.since <= 0) continue;
    hub::HistoryQuery q;
    q.link = i;
    q.stream = stream;
    q.since = req.since;
    if (pos) {
      q.has_position = true;
      q.epoch = pos->epoch;
      q.offset = pos->offset;
    }
    queries.push_back(std::move(q));
  }
  if (queries.empty()) {
    // Nothing asked for this subscription's streams: confirmed at once, as the memory broker.
    EnqueueText(c, slot, protocol::EncodeConfirmHistory(sub->sub.identifier));
    return;
  }
  // A gap repair in flight for this subscription: its buffer stays and goes out after this reply
  // (whose own reply is then dropped).
  PendingHistory& p = pending_history_[&sub->sub];
  p.internal = false;
  p.request_id = NextHistoryId(false);
  s.broker_inflight = true;
  shared_.remote_broker->History(this, ConnToken(c, slot), sub->sub.identifier, p.request_id,
                                 std::move(queries));
}

bool Worker::AdmitRemote(Conn& c, hub::Subscription* sub, uint32_t link, hub::Message& msg) {
  if (!pending_history_.empty()) {
    auto it = pending_history_.find(sub);
    if (it != pending_history_.end()) {
      if (it->second.buffer.size() >= kMaxBuffered) {
        it->second.overflow = true;  // reject_history at the reply; this one goes live
      } else {
        msg.Acquire();
        it->second.buffer.emplace_back(link, &msg);
        return false;
      }
    }
  }
  hub::Subscription::Link& l = sub->links[link];
  const uint64_t tag = EpochTag(msg.epoch());
  // A new epoch, or the stream started again (its numbering expired after 10 x --history_ttl
  // idle; same epoch, offset 1 after higher ones): a new sequence, not an old duplicate.
  if (!SameEpoch(l, tag) || (msg.offset() == 1 && l.hi > 1)) {
    l.lo = LoOf(tag, msg.offset());
    l.hi = msg.offset();
    return true;
  }
  if (msg.offset() <= l.hi) return false;
  if (msg.offset() > l.hi + 1) {
    // A gap: publications this node did not get live (stamped while its pub/sub subscription to
    // the stream was being made, or lost by pub/sub). Read them from the broker after the last
    // one sent, holding this and later live ones meanwhile, then send all in offset order.
    PendingHistory& p = pending_history_[sub];
    p.request_id = NextHistoryId(true);
    p.internal = true;
    msg.Acquire();
    p.buffer.emplace_back(link, &msg);
    hub::HistoryQuery q;
    q.link = link;
    q.stream = msg.stream();
    q.has_position = true;
    q.epoch = msg.epoch();
    q.offset = l.hi;
    std::vector<hub::HistoryQuery> queries;
    queries.push_back(std::move(q));
    counters_.broker_gap_repairs_total.Add();
    shared_.remote_broker->History(this, ConnToken(c, sub->conn_slot), sub->identifier,
                                   p.request_id, std::move(queries));
    return false;
  }
  l.hi = msg.offset();
  return true;
}

void Worker::SendRemoteOnce(Conn& c, uint32_t slot, hub::Subscription& sub, uint32_t link,
                            hub::Message& msg, uint64_t below) {
  if (link >= sub.links.size() || c.state != ConnState::kOpen) return;
  hub::Subscription::Link& l = sub.links[link];
  const uint64_t tag = EpochTag(msg.epoch());
  if (!SameEpoch(l, tag)) {
    l.lo = LoOf(tag, msg.offset());
    l.hi = msg.offset();
  } else if (msg.offset() > l.hi) {
    l.hi = msg.offset();
  } else if (msg.offset() >= below) {
    return;  // sent already
  }
  // (Below the range: a missed older one; the range's low end is lowered after the reply.)
  if (!msg.exclude_socket().empty() && msg.exclude_socket() == c.session->sid) return;
  hub::Frame* f = msg.BuildLocalFrame(sub.identifier, c.session->ext);
  Enqueue(c, slot, f);
  f->ReleaseCreator();
}

void Worker::ForgetPendingHistory(const hub::Subscription* sub) {
  auto it = pending_history_.find(sub);
  if (it == pending_history_.end()) return;
  for (auto& [link, m] : it->second.buffer) m->Release();
  pending_history_.erase(it);
}

void Worker::OnRemoteHistoryReply(hub::BrokerReply& reply) {
  PendingHistory pending;
  const hub::Subscription* key = nullptr;
  for (auto& [k, p] : pending_history_) {
    if (p.request_id == reply.request_id) {
      key = k;
      pending = std::move(p);
      break;
    }
  }
  if (key) pending_history_.erase(key);
  const uint32_t slot = static_cast<uint32_t>(reply.token);
  Conn* c = LookupToken(reply.token);
  SubState* sub = nullptr;
  if (c && c->session && key) {
    sub = c->session->Find(reply.identifier);
    if (sub && &sub->sub != key) sub = nullptr;  // unsubscribed and subscribed again
  }
  if (c && c->session && c->state == ConnState::kOpen && sub) {
    const bool ok = reply.ok && !pending.overflow;
    if (!ok && pending.internal) {
      LOG_DEBUG("sid=%s gap in %s could not be repaired", c->session->sid.c_str(),
                reply.identifier.c_str());
    } else if (!ok) {
      LOG_DEBUG("sid=%s history rejected for %s", c->session->sid.c_str(),
                reply.identifier.c_str());
      EnqueueText(*c, slot, protocol::EncodeRejectHistory(reply.identifier));
    } else {
      for (auto& st : reply.streams) {
        if (st.link >= sub->sub.links.size() || st.messages.empty()) continue;
        hub::Subscription::Link& l = sub->sub.links[st.link];
        const uint64_t tag = EpochTag(st.messages.front()->epoch());
        // Older than what this link already got: sent (missed), then the range covers them.
        const uint64_t below = SameEpoch(l, tag) ? LowOf(l) : 0;
        for (hub::Message* m : st.messages) SendRemoteOnce(*c, slot, sub->sub, st.link, *m, below);
        if (SameEpoch(l, tag) && st.messages.front()->offset() < LowOf(l)) {
          l.lo = LoOf(tag, st.messages.front()->offset());
        }
      }
    }
    for (auto& [link, m] : pending.buffer) SendRemoteOnce(*c, slot, sub->sub, link, *m, 0);
    if (ok && !pending.internal && c->state == ConnState::kOpen) {
      EnqueueText(*c, slot, protocol::EncodeConfirmHistory(reply.identifier));
    }
  }
  for (auto& [link, m] : pending.buffer) m->Release();
  // A gap repair (odd id) never held the session's commands; a client request always did, even
  // when its subscription went away meanwhile.
  if (reply.request_id & 1) return;
  if (c && c->session) {
    c->session->broker_inflight = false;
    if (c->state == ConnState::kOpen) DrainPending(*c, slot);
  }
}

void Worker::OnRemoteSessionReply(hub::BrokerReply& reply) {
  std::optional<std::string> jwt;
  if (auto it = restore_jwt_.find(reply.token); it != restore_jwt_.end()) {
    jwt = std::move(it->second);
    restore_jwt_.erase(it);
  }
  const uint32_t slot = static_cast<uint32_t>(reply.token);
  Conn* c = LookupToken(reply.token);
  if (!c || !c->session || c->state != ConnState::kConnecting) return;  // closed meanwhile
  if (reply.session) {
    ApplyRestoredSession(*c, slot, reply.old_sid, std::move(*reply.session));
  } else {
    LOG_DEBUG("sid=%s no session to restore for %s: connecting", c->session->sid.c_str(),
              reply.old_sid.c_str());
    if (!AuthenticateLocally(*c, slot, jwt)) {
      StartConnectRpc(*c, slot);
      return;
    }
  }
  if (c->state == ConnState::kOpen) DrainPending(*c, slot);
}

}  // namespace cable::server
