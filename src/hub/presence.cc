#include "hub/presence.h"

namespace cable::hub {

PresenceStore::JoinResult PresenceStore::Join(const std::string& stream, const std::string& sid,
                                              const std::string& id, const std::string& info_json,
                                              std::vector<Event>* events) {
  std::lock_guard<std::mutex> lock(mu_);
  SessionEntry& se = sessions_[sid];
  se.expires = 0;
  auto held = se.ids.find(stream);
  if (held != se.ids.end() && held->second == id) {
    // Already present as this id (e.g. a restored session re-sending its join): refresh the info.
    streams_[stream][id].info_json = info_json;
    return JoinResult::kOk;
  }
  auto& records = streams_[stream];
  const bool new_record = records.find(id) == records.end();
  if ((new_record && records.size() >= kMaxRecordsPerStream) ||
      (held == se.ids.end() && se.ids.size() >= kMaxStreamsPerSession)) {
    if (records.empty()) streams_.erase(stream);
    if (se.ids.empty()) sessions_.erase(sid);
    return JoinResult::kLimit;
  }
  if (held != se.ids.end()) {
    std::string old = held->second;
    se.ids.erase(held);
    LeaveLocked(stream, sid, old, events);
  }
  StreamRecord& r = streams_[stream][id];
  r.info_json = info_json;
  const bool first = r.sids.empty();
  r.sids.insert(sid);
  se.ids[stream] = id;
  if (first) events->push_back(Event{stream, "join", id, info_json});
  return JoinResult::kOk;
}

void PresenceStore::LeaveLocked(const std::string& stream, const std::string& sid,
                                const std::string& id, std::vector<Event>* events) {
  auto sit = streams_.find(stream);
  if (sit == streams_.end()) return;
  auto rit = sit->second.find(id);
  if (rit == sit->second.end()) return;
  rit->second.sids.erase(sid);
  if (rit->second.sids.empty()) {
    sit->second.erase(rit);
    events->push_back(Event{stream, "leave", id, {}});
    if (sit->second.empty()) streams_.erase(sit);
  }
}

void PresenceStore::Leave(const std::string& stream, const std::string& sid,
                          std::vector<Event>* events) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) return;
  auto held = it->second.ids.find(stream);
  if (held == it->second.ids.end()) return;
  std::string id = held->second;
  it->second.ids.erase(held);
  if (it->second.ids.empty()) sessions_.erase(it);
  LeaveLocked(stream, sid, id, events);
}

std::vector<PresenceStore::Record> PresenceStore::Info(const std::string& stream) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Record> out;
  auto it = streams_.find(stream);
  if (it == streams_.end()) return out;
  out.reserve(it->second.size());
  for (const auto& [id, r] : it->second) out.push_back(Record{id, r.info_json});
  return out;
}

void PresenceStore::Disconnect(const std::string& sid, int64_t now_s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(sid);
  if (it != sessions_.end()) it->second.expires = now_s + ttl_s_;
}

void PresenceStore::Restore(const std::string& old_sid, const std::string& new_sid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(old_sid);
  if (it == sessions_.end() || it->second.expires == 0 || old_sid == new_sid) return;
  SessionEntry entry = std::move(it->second);
  sessions_.erase(it);
  entry.expires = 0;
  for (const auto& [stream, id] : entry.ids) {
    auto sit = streams_.find(stream);
    if (sit == streams_.end()) continue;
    auto rit = sit->second.find(id);
    if (rit == sit->second.end()) continue;
    rit->second.sids.erase(old_sid);
    rit->second.sids.insert(new_sid);
  }
  sessions_[new_sid] = std::move(entry);
}

void PresenceStore::Sweep(int64_t now_s, std::vector<Event>* events) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second.expires != 0 && it->second.expires <= now_s) {
      for (const auto& [stream, id] : it->second.ids) LeaveLocked(stream, it->first, id, events);
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

bool PresenceStore::HasSession(const std::string& sid) const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.count(sid) != 0;
}

std::vector<PresenceStore::Held> PresenceStore::HeldBy(const std::string& sid) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Held> out;
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) return out;
  for (const auto& [stream, id] : it->second.ids) {
    auto sit = streams_.find(stream);
    if (sit == streams_.end()) continue;
    auto rit = sit->second.find(id);
    if (rit == sit->second.end()) continue;
    out.push_back(Held{stream, id, rit->second.info_json});
  }
  return out;
}

void PresenceStore::Forget(const std::string& sid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) return;
  for (const auto& [stream, id] : it->second.ids) {
    auto sit = streams_.find(stream);
    if (sit == streams_.end()) continue;
    auto rit = sit->second.find(id);
    if (rit == sit->second.end()) continue;
    rit->second.sids.erase(sid);
    if (rit->second.sids.empty()) sit->second.erase(rit);  // silently: it lives on elsewhere
    if (sit->second.empty()) streams_.erase(sit);
  }
  sessions_.erase(it);
}

void PresenceStore::Adopt(const std::string& sid, const std::vector<Held>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Held& h : held) {
    SessionEntry& se = sessions_[sid];
    if (se.ids.count(h.stream) || se.ids.size() >= kMaxStreamsPerSession) continue;
    auto& records = streams_[h.stream];
    auto rit = records.find(h.id);
    if (rit == records.end()) {
      if (records.size() >= kMaxRecordsPerStream) continue;  // never empty here
      rit = records.emplace(h.id, StreamRecord{h.info_json, {}}).first;
    }
    rit->second.sids.insert(sid);
    se.ids[h.stream] = h.id;
  }
  auto it = sessions_.find(sid);
  if (it != sessions_.end() && it->second.ids.empty()) sessions_.erase(it);
}

PresenceStore::Sizes PresenceStore::sizes() const {
  std::lock_guard lock(mu_);
  Sizes out;
  out.streams = streams_.size();
  for (const auto& [stream, records] : streams_) out.records += records.size();
  out.sessions = sessions_.size();
  return out;
}

}  // namespace cable::hub
