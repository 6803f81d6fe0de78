// hub::PresenceStore — who is present in which stream (`--broker memory`, one node), for the
// extended protocol's `join` / `leave` / `presence` commands and RPC `CommandResponse.presence`.
//
// Model (anycable-go's memory broker): a stream holds presence *records* keyed by presence id; a
// record is held by one or more sessions (sids). A session holds at most one presence id per
// stream. Join of a session to a record nobody held yet is a "join" event; the last session
// leaving a record is a "leave" event. The caller broadcasts the events (transient publications).
//
// Disconnected sessions keep their records for `--presence_ttl` seconds: Disconnect() marks them,
// Sweep() expires them (and returns the resulting leave events), Restore() hands them to the
// restoring session's new sid without any event (no leave/join flicker).
//
// Bounds: kMaxRecordsPerStream distinct ids per stream and kMaxStreamsPerSession streams per
// session; a join beyond them fails (the client gets an error reply).
//
// Ownership / threads: one mutex-protected map beside the broker's session store. It is touched
// only by presence commands, RPC presence replies, unsubscribes and disconnects of sessions that
// joined something, restores, and the once-a-second sweep of worker 0 — never by the delivery
// path. Every public method may be called from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace cable::hub {

class PresenceStore {
 public:
  static constexpr size_t kMaxRecordsPerStream = 10000;
  static constexpr size_t kMaxStreamsPerSession = 100;

  explicit PresenceStore(int ttl_s) : ttl_s_(ttl_s) {}

  struct Event {
    std::string stream;
    std::string type;  // "join" | "leave"
    std::string id;
    std::string info_json;  // join only; empty = no info
  };
  enum class JoinResult { kOk, kLimit };
  // Session `sid` joins `stream` as `id`. A different id of the same session in that stream is
  // left first. Events (possibly none) are appended to `events`.
  JoinResult Join(const std::string& stream, const std::string& sid, const std::string& id,
                  const std::string& info_json, std::vector<Event>* events);
  // Session `sid` leaves `stream` (whatever id it holds there); no-op if it holds none.
  void Leave(const std::string& stream, const std::string& sid, std::vector<Event>* events);

  struct Record {
    std::string id;
    std::string info_json;
  };
  // Records of a stream, ordered by id.
  std::vector<Record> Info(const std::string& stream) const;

  // The session's connection closed: its records expire after the TTL unless restored.
  void Disconnect(const std::string& sid, int64_t now_s);
  // The records of `old_sid` (disconnected, not expired) now belong to `new_sid`.
  void Restore(const std::string& old_sid, const std::string& new_sid);
  // Expires disconnected sessions; appends their leave events.
  void Sweep(int64_t now_s, std::vector<Event>* events);

  bool HasSession(const std::string& sid) const;

  // Live upgrade (#19): a connected session's records leave with it and are adopted by the new
  // process's store, without any event. Held() lists them; Forget() drops them once the new
  // process holds them (a record other sessions still hold stays); Adopt() adds them (a record
  // another adopted session brought already just gains this sid). Adopt ignores what exceeds the
  // bounds (it cannot be refused any more: the old store held it).
  struct Held {
    std::string stream;
    std::string id;
    std::string info_json;
  };
  std::vector<Held> HeldBy(const std::string& sid) const;
  void Forget(const std::string& sid);
  void Adopt(const std::string& sid, const std::vector<Held>& held);

  // For metrics: streams with records, records (distinct ids per stream), sessions.
  struct Sizes {
    size_t streams = 0, records = 0, sessions = 0;
  };
  Sizes sizes() const;

 private:
  struct StreamRecord {
    std::string info_json;
    std::set<std::string> sids;
  };
  struct SessionEntry {
    std::map<std::string, std::string> ids;  // stream -> presence id
    int64_t expires = 0;                     // 0 = connected
  };
  void LeaveLocked(const std::string& stream, const std::string& sid, const std::string& id,
                   std::vector<Event>* events);

  const int64_t ttl_s_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::map<std::string, StreamRecord>> streams_;
  std::unordered_map<std::string, SessionEntry> sessions_;
};

}  // namespace cable::hub
