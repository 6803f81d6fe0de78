#include "hub/broker.h"

#include <sys/random.h>

#include <cerrno>
#include <ctime>

namespace cable::hub {
namespace {

int64_t UnixNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

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

}  // namespace cable::hub
