#include "hub/broker.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace cable::hub {
namespace {

int64_t UnixNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

// The live upgrade's state encoding: little-endian integers, length-prefixed strings.
class StateWriter {
 public:
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void Str(const std::string& s) {
    U64(s.size());
    out_ += s;
  }
  void Map(const std::map<std::string, std::string>& m) {
    U64(m.size());
    for (const auto& [k, v] : m) {
      Str(k);
      Str(v);
    }
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class StateReader {
 public:
  explicit StateReader(const std::string& in) : in_(in) {}
  bool ok() const { return ok_; }
  bool AtEnd() const { return ok_ && pos_ == in_.size(); }
  uint64_t U64() {
    if (!Need(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_++])) << (8 * i);
    return v;
  }
  // A count of entries that take at least `min_bytes` each: bounded by what is left.
  uint64_t Count(size_t min_bytes) {
    uint64_t n = U64();
    if (ok_ && n > (in_.size() - pos_) / min_bytes) ok_ = false;
    return ok_ ? n : 0;
  }
  std::string Str() {
    uint64_t n = U64();
    if (!Need(n)) return {};
    std::string s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void Map(std::map<std::string, std::string>* m) {
    uint64_t n = Count(16);
    for (uint64_t i = 0; i < n && ok_; ++i) {
      std::string k = Str();
      (*m)[k] = Str();
    }
  }

 private:
  bool Need(uint64_t n) {
    if (!ok_ || n > in_.size() - pos_) ok_ = false;
    return ok_;
  }
  const std::string& in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

constexpr uint64_t kStateVersion = 1;

}  // namespace

std::string RandomId(size_t n) {
  static const char kAlphabet[] =
      "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict";
  unsigned char bytes[64];
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    size_t want = std::min(sizeof(bytes), n - out.size());
    ssize_t got = getrandom(bytes, want, 0);
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      continue;  // getrandom on Linux >= 3.17 only fails with EINTR once the pool is ready
    }
    for (ssize_t i = 0; i < got; ++i) out.push_back(kAlphabet[bytes[i] & 63]);
  }
  return out;
}

MemoryBroker::MemoryBroker(BroadcastLog& log, int history_limit, int history_ttl_s,
                           int sessions_ttl_s)
    : log_(log),
      history_limit_(static_cast<size_t>(history_limit > 0 ? history_limit : 1)),
      history_ttl_s_(history_ttl_s),
      sessions_ttl_s_(sessions_ttl_s),
      epoch_(RandomId(4)) {}

MemoryBroker::~MemoryBroker() {
  for (auto& [name, s] : streams_) {
    for (Message* m : s.entries) m->Release();
  }
  // Never published: the message still holds one reference per worker.
  for (Message* m : backlog_) {
    for (int i = 0; i < log_.consumers(); ++i) m->Release();
  }
}

bool MemoryBroker::Publish(Message* msg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (msg->kind() == Message::Kind::kPublication && !msg->transient()) {
    const int64_t now = UnixNow();
    Stream& s = streams_[msg->stream()];
    streams_count_.store(static_cast<int64_t>(streams_.size()), std::memory_order_relaxed);
    ExpireLocked(s, now);
    msg->SetPosition(epoch_, ++s.top, now, ++seq_);
    s.last_add = now;
    msg->Acquire();  // the history's reference
    s.entries.push_back(msg);
    ++entries_;
    while (s.entries.size() > history_limit_) {
      s.entries.front()->Release();
      s.entries.pop_front();
      --entries_;
    }
    entries_count_.store(entries_, std::memory_order_relaxed);
  }
  if (backlog_.empty() && log_.TryPublish(msg)) return true;
  backlog_.push_back(msg);
  backlog_size_.store(backlog_.size(), std::memory_order_release);
  return FlushLocked();
}

bool MemoryBroker::Flush() {
  if (!HasBacklog()) return true;
  std::lock_guard<std::mutex> lock(mu_);
  return FlushLocked();
}

bool MemoryBroker::FlushLocked() {
  while (!backlog_.empty() && log_.TryPublish(backlog_.front())) backlog_.pop_front();
  backlog_size_.store(backlog_.size(), std::memory_order_release);
  return backlog_.empty();
}

void MemoryBroker::ExpireLocked(Stream& s, int64_t now) {
  const int64_t deadline = now - history_ttl_s_;
  while (!s.entries.empty() && s.entries.front()->unix_ts() < deadline) {
    s.entries.front()->Release();
    s.entries.pop_front();
    --entries_;
  }
  entries_count_.store(entries_, std::memory_order_relaxed);
}

bool MemoryBroker::HistoryFrom(const std::string& stream, std::string_view epoch, uint64_t offset,
                               std::vector<Message*>* out, uint64_t* horizon) {
  out->clear();
  *horizon = 0;
  if (epoch != epoch_) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) return false;
  Stream& s = it->second;
  ExpireLocked(s, UnixNow());
  if (s.entries.empty()) return false;
  const uint64_t low = s.entries.front()->offset();
  if (offset < low || offset > s.top) return false;
  *horizon = seq_;
  for (size_t i = static_cast<size_t>(offset - low) + 1; i < s.entries.size(); ++i) {
    s.entries[i]->Acquire();
    out->push_back(s.entries[i]);
  }
  return true;
}

bool MemoryBroker::HistorySince(const std::string& stream, int64_t since,
                                std::vector<Message*>* out, uint64_t* horizon) {
  out->clear();
  *horizon = 0;
  std::lock_guard<std::mutex> lock(mu_);
  *horizon = seq_;
  auto it = streams_.find(stream);
  if (it == streams_.end()) return true;
  Stream& s = it->second;
  ExpireLocked(s, UnixNow());
  for (Message* m : s.entries) {
    if (m->unix_ts() >= since) {
      m->Acquire();
      out->push_back(m);
    }
  }
  return true;
}

void MemoryBroker::Sweep() {
  const int64_t now = UnixNow();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = streams_.begin(); it != streams_.end();) {
      ExpireLocked(it->second, now);
      // An empty stream keeps its numbering for 10 x ttl after its last publication (as
      // anycable-go does today), so a late client's position is not matched by a new message.
      if (it->second.entries.empty() && now - it->second.last_add > 10 * history_ttl_s_) {
        it = streams_.erase(it);
      } else {
        ++it;
      }
    }
    streams_count_.store(static_cast<int64_t>(streams_.size()), std::memory_order_relaxed);
  }
  std::lock_guard<std::mutex> lock(sessions_mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second.expires <= now) {
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  sessions_count_.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
}

void MemoryBroker::CommitSession(const std::string& sid, CachedSession session) {
  if (sessions_ttl_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(sessions_mu_);
  sessions_[sid] = SessionEntry{UnixNow() + sessions_ttl_s_, std::move(session)};
  sessions_count_.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
}

std::optional<CachedSession> MemoryBroker::TakeSession(const std::string& sid) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) return std::nullopt;
  std::optional<CachedSession> out;
  if (it->second.expires > UnixNow()) out = std::move(it->second.session);
  sessions_.erase(it);
  sessions_count_.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
  return out;
}

std::string MemoryBroker::ExportState() {
  StateWriter w;
  w.U64(kStateVersion);
  {
    std::lock_guard<std::mutex> lock(mu_);
    w.Str(epoch_);
    w.U64(seq_);
    w.U64(streams_.size());
    for (const auto& [name, st] : streams_) {
      w.Str(name);
      w.U64(st.top);
      w.U64(static_cast<uint64_t>(st.last_add));
      w.U64(st.entries.size());
      for (const Message* m : st.entries) {
        w.U64(m->offset());
        w.U64(static_cast<uint64_t>(m->unix_ts()));
        w.U64(m->seq());
        w.Str(m->message_json());
        w.Str(m->exclude_socket());
      }
    }
  }
  std::lock_guard<std::mutex> lock(sessions_mu_);
  w.U64(sessions_.size());
  for (const auto& [sid, e] : sessions_) {
    w.Str(sid);
    w.U64(static_cast<uint64_t>(e.expires));
    const CachedSession& c = e.session;
    w.Str(c.identifiers);
    w.Map(c.cstate);
    w.U64((c.rpc_free_auth ? 1 : 0) | (c.used_rpc ? 2 : 0));
    w.U64(c.subs.size());
    for (const auto& sub : c.subs) {
      w.Str(sub.identifier);
      w.U64(sub.streams.size());
      for (const auto& stream : sub.streams) w.Str(stream);
      w.Map(sub.istate);
      w.U64(sub.builtin ? 1 : 0);
    }
  }
  return std::move(w.out());
}

bool MemoryBroker::ImportState(const std::string& bytes) {
  StateReader r(bytes);
  if (r.U64() != kStateVersion) return false;
  std::string epoch = r.Str();
  const uint64_t seq = r.U64();
  std::unordered_map<std::string, Stream> streams;
  int64_t entries = 0;
  bool ok = r.ok() && !epoch.empty();
  auto release_all = [&] {
    for (auto& [name, st] : streams) {
      for (Message* m : st.entries) m->Release();
    }
  };
  const uint64_t nstreams = ok ? r.Count(32) : 0;
  for (uint64_t i = 0; i < nstreams && r.ok(); ++i) {
    std::string name = r.Str();
    Stream& st = streams[name];
    st.top = r.U64();
    st.last_add = static_cast<int64_t>(r.U64());
    const uint64_t n = r.Count(40);
    for (uint64_t j = 0; j < n && r.ok(); ++j) {
      const uint64_t offset = r.U64();
      const int64_t ts = static_cast<int64_t>(r.U64());
      const uint64_t mseq = r.U64();
      std::string json = r.Str();
      std::string exclude = r.Str();
      if (!r.ok()) break;
      // One reference, the history's; built for every worker (its frames are shared by them).
      Message* m = Message::NewPublication(name, std::move(json), std::move(exclude),
                                           log_.consumers(), false);
      for (int k = 1; k < log_.consumers(); ++k) m->Release();
      m->SetPosition(epoch, offset, ts, mseq);
      st.entries.push_back(m);
      ++entries;
    }
  }
  std::unordered_map<std::string, SessionEntry> sessions;
  const uint64_t nsessions = r.ok() ? r.Count(48) : 0;
  for (uint64_t i = 0; i < nsessions && r.ok(); ++i) {
    std::string sid = r.Str();
    SessionEntry e;
    e.expires = static_cast<int64_t>(r.U64());
    e.session.identifiers = r.Str();
    r.Map(&e.session.cstate);
    const uint64_t flags = r.U64();
    e.session.rpc_free_auth = flags & 1;
    e.session.used_rpc = flags & 2;
    const uint64_t nsubs = r.Count(32);
    for (uint64_t j = 0; j < nsubs && r.ok(); ++j) {
      CachedSubscription sub;
      sub.identifier = r.Str();
      const uint64_t nstr = r.Count(8);
      for (uint64_t k = 0; k < nstr && r.ok(); ++k) sub.streams.push_back(r.Str());
      r.Map(&sub.istate);
      sub.builtin = r.U64() != 0;
      e.session.subs.push_back(std::move(sub));
    }
    sessions[sid] = std::move(e);
  }
  if (!ok || !r.AtEnd()) {
    release_all();
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, st] : streams_) {
      for (Message* m : st.entries) m->Release();
    }
    streams_ = std::move(streams);
    epoch_ = std::move(epoch);
    seq_ = std::max(seq_, seq);
    entries_ = entries;
    entries_count_.store(entries_, std::memory_order_relaxed);
    streams_count_.store(static_cast<int64_t>(streams_.size()), std::memory_order_relaxed);
  }
  std::lock_guard<std::mutex> lock(sessions_mu_);
  for (auto& [sid, e] : sessions) sessions_[sid] = std::move(e);
  sessions_count_.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
  return true;
}

}  // namespace cable::hub
