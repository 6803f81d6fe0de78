#include "hub/remote_broker.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/log.h"

namespace cable::hub {
namespace {

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t UnixNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

void PutString(std::string& out, std::string_view s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  out.append(reinterpret_cast<const char*>(&n), sizeof(n));
  out.append(s);
}

struct Reader {
  std::string_view in;
  bool ok = true;
  uint32_t U32() {
    uint32_t n = 0;
    if (in.size() < sizeof(n)) {
      ok = false;
      return 0;
    }
    std::memcpy(&n, in.data(), sizeof(n));
    in.remove_prefix(sizeof(n));
    return n;
  }
  std::string Str() {
    const uint32_t n = U32();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

void PutMap(std::string& out, const std::map<std::string, std::string>& m) {
  PutString(out, std::to_string(m.size()));
  for (const auto& [k, v] : m) {
    PutString(out, k);
    PutString(out, v);
  }
}

bool GetMap(Reader& r, std::map<std::string, std::string>* m) {
  const std::string n = r.Str();
  if (!r.ok) return false;
  const unsigned long count = std::strtoul(n.c_str(), nullptr, 10);
  for (unsigned long i = 0; i < count && r.ok; ++i) {
    std::string k = r.Str();
    std::string v = r.Str();
    (*m)[std::move(k)] = std::move(v);
  }
  return r.ok;
}

constexpr std::string_view kSessionMagic = "rcs1";
constexpr int kProbeMs = 500;  // store health probe period while it is failing

}  // namespace

std::string EncodeSession(const CachedSession& s) {
  std::string out(kSessionMagic);
  PutString(out, s.identifiers);
  PutMap(out, s.cstate);
  PutString(out, std::string(1, s.rpc_free_auth ? '1' : '0') + (s.used_rpc ? '1' : '0'));
  PutString(out, std::to_string(s.subs.size()));
  for (const auto& sub : s.subs) {
    PutString(out, sub.identifier);
    PutString(out, sub.builtin ? "1" : "0");
    PutMap(out, sub.istate);
    PutString(out, std::to_string(sub.streams.size()));
    for (const auto& st : sub.streams) PutString(out, st);
  }
  return out;
}

std::optional<CachedSession> DecodeSession(std::string_view blob) {
  if (blob.substr(0, kSessionMagic.size()) != kSessionMagic) return std::nullopt;
  Reader r{blob.substr(kSessionMagic.size())};
  CachedSession s;
  s.identifiers = r.Str();
  if (!GetMap(r, &s.cstate)) return std::nullopt;
  const std::string flags = r.Str();
  if (!r.ok || flags.size() != 2) return std::nullopt;
  s.rpc_free_auth = flags[0] == '1';
  s.used_rpc = flags[1] == '1';
  const unsigned long subs = std::strtoul(r.Str().c_str(), nullptr, 10);
  for (unsigned long i = 0; i < subs && r.ok; ++i) {
    CachedSubscription sub;
    sub.identifier = r.Str();
    sub.builtin = r.Str() == "1";
    if (!GetMap(r, &sub.istate)) return std::nullopt;
    const unsigned long streams = std::strtoul(r.Str().c_str(), nullptr, 10);
    for (unsigned long j = 0; j < streams && r.ok; ++j) sub.streams.push_back(r.Str());
    s.subs.push_back(std::move(sub));
  }
  if (!r.ok || !r.in.empty()) return std::nullopt;
  return s;
}

BrokerReply::~BrokerReply() {
  for (auto& st : streams) {
    for (Message* m : st.messages) m->Release();
  }
}

struct RemoteBroker::Request {
  enum class Kind : uint8_t {
    kAppend,
    kHistory,
    kTake,
    kPut,
    kPresenceJoin,
    kPresenceLeave,
    kPresenceInfo,
    kPresenceTouch,
    kPresenceRestore,
    kStop
  };
  Request* next = nullptr;
  Kind kind = Kind::kStop;
  std::vector<AppendEntry> batch;
  AppendDone done;
  BrokerReplySink* sink = nullptr;
  uint64_t token = 0;
  std::string identifier;  // kHistory; kTake/kPut: the sid
  uint64_t request_id = 0;
  std::vector<HistoryQuery> queries;
  CachedSession session;
  // presence: stream, sid (restore: old sid), id (restore: new sid), info; touch: sids
  std::string stream, sid, id, info;
  std::vector<std::string> sids;
};

RemoteBroker::RemoteBroker(std::unique_ptr<BrokerStore> store, std::string name, int sessions_ttl_s)
    : store_(std::move(store)), name_(std::move(name)), sessions_ttl_s_(sessions_ttl_s) {
  event_fd_ = eventfd(0, EFD_CLOEXEC);
  thread_ = std::thread([this] { Run(); });
}

RemoteBroker::~RemoteBroker() {
  Stop();
  if (event_fd_ >= 0) close(event_fd_);
}

void RemoteBroker::Stop() {
  if (stopped_) return;
  stopped_ = true;
  Push(new Request());  // kStop
  if (thread_.joinable()) thread_.join();
  for (Request* r = inbox_.TakeAll(); r;) {
    Request* next = r->next;
    delete r;
    r = next;
  }
}

void RemoteBroker::Push(Request* r) {
  if (inbox_.Push(r)) {
    uint64_t one = 1;
    ssize_t n;
    do {
      n = write(event_fd_, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
  }
}

void RemoteBroker::Append(std::vector<AppendEntry> batch, AppendDone done) {
  auto* r = new Request();
  r->kind = Request::Kind::kAppend;
  r->batch = std::move(batch);
  r->done = std::move(done);
  Push(r);
}

void RemoteBroker::History(BrokerReplySink* sink, uint64_t token, std::string identifier,
                           uint64_t request_id, std::vector<HistoryQuery> queries) {
  auto* r = new Request();
  r->kind = Request::Kind::kHistory;
  r->sink = sink;
  r->token = token;
  r->identifier = std::move(identifier);
  r->request_id = request_id;
  r->queries = std::move(queries);
  Push(r);
}

void RemoteBroker::TakeSession(BrokerReplySink* sink, uint64_t token, std::string old_sid) {
  auto* r = new Request();
  r->kind = Request::Kind::kTake;
  r->sink = sink;
  r->token = token;
  r->identifier = std::move(old_sid);
  Push(r);
}

void RemoteBroker::PutSession(std::string sid, CachedSession session) {
  auto* r = new Request();
  r->kind = Request::Kind::kPut;
  r->identifier = std::move(sid);
  r->session = std::move(session);
  Push(r);
}

void RemoteBroker::EnablePresence(int ttl_s, PresencePublish publish) {
  if (!store_->SupportsPresence()) return;  // presence commands then answer the error reply
  presence_publish_ = std::move(publish);
  presence_ttl_s_.store(ttl_s > 0 ? ttl_s : 1, std::memory_order_release);
}

void RemoteBroker::PresenceJoin(BrokerReplySink* sink, uint64_t token, std::string identifier,
                                std::string stream, std::string sid, std::string id,
                                std::string info_json) {
  auto* r = new Request();
  r->kind = Request::Kind::kPresenceJoin;
  r->sink = sink;
  r->token = token;
  r->identifier = std::move(identifier);
  r->stream = std::move(stream);
  r->sid = std::move(sid);
  r->id = std::move(id);
  r->info = std::move(info_json);
  Push(r);
}

void RemoteBroker::PresenceLeave(std::string stream, std::string sid) {
  auto* r = new Request();
  r->kind = Request::Kind::kPresenceLeave;
  r->stream = std::move(stream);
  r->sid = std::move(sid);
  Push(r);
}

void RemoteBroker::PresenceInfo(BrokerReplySink* sink, uint64_t token, std::string identifier,
                                std::string stream) {
  auto* r = new Request();
  r->kind = Request::Kind::kPresenceInfo;
  r->sink = sink;
  r->token = token;
  r->identifier = std::move(identifier);
  r->stream = std::move(stream);
  Push(r);
}

void RemoteBroker::PresenceTouch(std::vector<std::string> sids) {
  if (sids.empty()) return;
  auto* r = new Request();
  r->kind = Request::Kind::kPresenceTouch;
  r->sids = std::move(sids);
  Push(r);
}

void RemoteBroker::PresenceRestore(std::string old_sid, std::string new_sid) {
  auto* r = new Request();
  r->kind = Request::Kind::kPresenceRestore;
  r->sid = std::move(old_sid);
  r->id = std::move(new_sid);
  Push(r);
}

void RemoteBroker::PublishPresence(std::vector<PresenceEvent> events) {
  if (events.empty() || !presence_publish_) return;
  counters_.presence_events_total.fetch_add(events.size(), std::memory_order_relaxed);
  presence_publish_(std::move(events));
}

void RemoteBroker::SweepPresence() {
  std::vector<PresenceEvent> events;
  // Expiries are whole seconds (floor(touch time) + ttl): sweeping at the previous second makes a
  // session expire no sooner than --presence_ttl after its last touch, not up to 1 s early (which,
  // with a 2 s TTL touched every second, dropped live sessions whose touch ran a little late).
  auto swept = store_->PresenceSweep(UnixNow() - 1, &events);
  if (!swept.ok()) {
    Failed("presence sweep", swept.error());
    return;
  }
  Succeeded();
  PublishPresence(std::move(events));
}

void RemoteBroker::HandlePresence(Request& r) {
  const int64_t expires_at = UnixNow() + presence_ttl_s();
  std::vector<PresenceEvent> events;
  std::unique_ptr<BrokerReply> reply;
  if (r.sink) {
    reply = std::make_unique<BrokerReply>();
    reply->kind = BrokerReply::Kind::kPresence;
    reply->token = r.token;
    reply->identifier = r.identifier;
  }
  switch (r.kind) {
    case Request::Kind::kPresenceJoin: {
      auto joined = store_->PresenceJoin(r.stream, r.sid, r.id, r.info, expires_at, &events);
      if (!joined.ok()) {
        Failed("presence join", joined.error());
      } else {
        Succeeded();
        reply->ok = joined.value();
      }
      break;
    }
    case Request::Kind::kPresenceLeave: {
      auto left = store_->PresenceLeave(r.stream, r.sid, &events);
      if (!left.ok()) {
        Failed("presence leave", left.error());
      } else {
        Succeeded();
      }
      break;
    }
    case Request::Kind::kPresenceInfo: {
      reply->presence_info = true;
      auto info = store_->PresenceInfo(r.stream);
      if (!info.ok()) {
        Failed("presence info", info.error());
      } else {
        Succeeded();
        reply->ok = true;
        reply->records = std::move(info.value());
      }
      break;
    }
    case Request::Kind::kPresenceTouch: {
      auto touched = store_->PresenceTouch(r.sids, expires_at);
      if (!touched.ok()) {
        Failed("presence touch", touched.error());
      } else {
        Succeeded();
      }
      break;
    }
    case Request::Kind::kPresenceRestore: {
      auto restored = store_->PresenceRestore(r.sid, r.id, expires_at);
      if (!restored.ok()) {
        Failed("presence restore", restored.error());
      } else {
        Succeeded();
      }
      break;
    }
    default:
      break;
  }
  PublishPresence(std::move(events));
  if (reply) r.sink->OnBrokerReply(std::move(reply));
}

void RemoteBroker::Run() {
  bool running = true;
  while (running) {
    if (presence_enabled() && !down_) {
      // Expired presence sessions are swept once a second (every node; the store's atomic sweep
      // hands each leave to one of them).
      const int64_t now = MonoMs();
      if (now >= next_sweep_ms_) {
        next_sweep_ms_ = now + 1000;
        SweepPresence();
        continue;
      }
      pollfd pfd{event_fd_, POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(next_sweep_ms_ - now)) == 0) continue;
    }
    if (down_) {
      // While the store is failing, probe it every kProbeMs even without traffic, so the outage
      // ends (log line, store_up metric) as soon as it is back.
      pollfd pfd{event_fd_, POLLIN, 0};
      if (poll(&pfd, 1, kProbeMs) == 0) {
        if (auto e = store_->Epoch(); e.ok()) {
          Succeeded();
        } else {
          store_->Reset();
        }
        continue;
      }
    }
    uint64_t v;
    ssize_t n = read(event_fd_, &v, sizeof(v));
    if (n < 0 && errno != EINTR && errno != EAGAIN) break;
    for (Request* r = inbox_.TakeAll(); r;) {
      Request* next = r->next;
      if (r->kind == Request::Kind::kStop) running = false;
      if (running) Handle(*r);
      delete r;
      r = next;
    }
  }
}

void RemoteBroker::Failed(const std::string& what, const std::string& error) {
  counters_.errors_total.fetch_add(1, std::memory_order_relaxed);
  store_->Reset();
  if (down_) return;
  down_ = true;
  counters_.store_up.store(0, std::memory_order_relaxed);
  LOG_WARN(
      "broker: %s unavailable (%s: %s); publications go out without offsets, history is "
      "rejected and sessions are not restored until it is back",
      name_.c_str(), what.c_str(), error.c_str());
}

void RemoteBroker::Succeeded() {
  if (!down_) return;
  down_ = false;
  counters_.store_up.store(1, std::memory_order_relaxed);
  LOG_INFO("broker: %s is back", name_.c_str());
}

void RemoteBroker::Handle(Request& r) {
  switch (r.kind) {
    case Request::Kind::kAppend: {
      std::string epoch;
      std::vector<uint64_t> offsets(r.batch.size(), 0);
      auto e = store_->Epoch();
      if (!e.ok()) {
        Failed("epoch", e.error());
      } else {
        auto stamped = store_->Append(r.batch, UnixNow());
        if (!stamped.ok()) {
          Failed("append", stamped.error());
        } else {
          Succeeded();
          epoch = e.value();
          offsets = std::move(stamped.value());
        }
      }
      uint64_t n = 0;
      for (uint64_t o : offsets) n += o != 0;
      counters_.stamped_total.fetch_add(n, std::memory_order_relaxed);
      counters_.unstamped_total.fetch_add(offsets.size() - n, std::memory_order_relaxed);
      if (n == 0) epoch.clear();
      r.done(epoch, offsets, n != 0 && store_->PublishesOnAppend());
      break;
    }
    case Request::Kind::kHistory: {
      auto reply = std::make_unique<BrokerReply>();
      reply->kind = BrokerReply::Kind::kHistory;
      reply->token = r.token;
      reply->identifier = std::move(r.identifier);
      reply->request_id = r.request_id;
      reply->ok = true;
      auto epoch = store_->Epoch();
      if (!epoch.ok()) {
        Failed("epoch", epoch.error());
        reply->ok = false;
      }
      for (size_t i = 0; i < r.queries.size() && reply->ok; ++i) {
        const HistoryQuery& q = r.queries[i];
        if (q.has_position && q.epoch != epoch.value()) {
          reply->ok = false;  // anycable-go: epoch mismatch
          break;
        }
        auto read = q.has_position ? store_->ReadFrom(q.stream, q.offset)
                                   : store_->ReadSince(q.stream, q.since);
        if (!read.ok()) {
          Failed("history", read.error());
          reply->ok = false;
          break;
        }
        Succeeded();
        std::vector<StoredPublication>& entries = read.value();
        size_t first = 0;
        if (q.has_position) {
          // The client's position must still be retained (memory broker's rules: an unknown or
          // empty stream, a position below the lowest retained one or above the top → reject).
          if (entries.empty() || entries.front().offset != q.offset) {
            reply->ok = false;
            break;
          }
          first = 1;
        }
        BrokerReply::StreamMessages sm;
        sm.link = q.link;
        for (size_t j = first; j < entries.size(); ++j) {
          Message* m = Message::NewPublication(q.stream, std::move(entries[j].data), "", 1);
          m->SetPosition(epoch.value(), entries[j].offset, entries[j].unix_ts, 0);
          sm.messages.push_back(m);
        }
        reply->streams.push_back(std::move(sm));
      }
      if (!reply->ok) {
        counters_.history_rejected_total.fetch_add(1, std::memory_order_relaxed);
        for (auto& st : reply->streams) {
          for (Message* m : st.messages) m->Release();
        }
        reply->streams.clear();
      }
      r.sink->OnBrokerReply(std::move(reply));
      break;
    }
    case Request::Kind::kTake: {
      auto reply = std::make_unique<BrokerReply>();
      reply->kind = BrokerReply::Kind::kSession;
      reply->token = r.token;
      reply->old_sid = r.identifier;
      auto got = store_->TakeSession(r.identifier);
      if (!got.ok()) {
        Failed("session restore", got.error());
      } else {
        Succeeded();
        if (got.value()) reply->session = DecodeSession(*got.value());
      }
      r.sink->OnBrokerReply(std::move(reply));
      break;
    }
    case Request::Kind::kPut: {
      if (sessions_ttl_s_ <= 0) break;
      auto put = store_->PutSession(r.identifier, EncodeSession(r.session), sessions_ttl_s_);
      if (!put.ok()) {
        Failed("session commit", put.error());
      } else {
        Succeeded();
      }
      break;
    }
    case Request::Kind::kPresenceJoin:
    case Request::Kind::kPresenceLeave:
    case Request::Kind::kPresenceInfo:
    case Request::Kind::kPresenceTouch:
    case Request::Kind::kPresenceRestore:
      HandlePresence(r);
      break;
    case Request::Kind::kStop:
      break;
  }
}

}  // namespace cable::hub
