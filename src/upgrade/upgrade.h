// upgrade — live binary upgrade (#19): a new ringcable process takes over the listeners and every
// open connection of the running one, and no client notices.
//
// DESIGN
//
// Control channel. On SIGUSR2 the old process makes an AF_UNIX SOCK_SEQPACKET socketpair and
// starts the binary found at the path it was started from (argv[0]) with the same arguments and
// environment plus RINGCABLE_UPGRADE_FD=<n> naming the child's end (only that descriptor is
// inherited: it is dup2'ed in the child between fork and exec, every other one is CLOEXEC).
// SEQPACKET keeps message boundaries and carries SCM_RIGHTS. Messages (Packet):
//   old → new  kListeners  one fd per listener: the main ones, then broadcast, then REST API ones
//   new → old  kReady      the new process's workers run (not accepting yet)
//   old → new  kAccept     the old process stopped accepting and closed its broadcast intake:
//                          the new one accepts from now on (connections queue meanwhile)
//   old → new  kConn       one connection: its socket (SCM_RIGHTS) + a ConnRecord
//   new → old  kAck        the new process holds the socket and the state (names the record)
//   old → new  kDone       nothing more will come: release held publications
// The old process owns its end on a controller thread (main.cc): workers never block on it; they
// hand records to the controller through a queue and get acks through their inbox.
//
// Listener handover. Each worker's SO_REUSEPORT listener is passed as is (the same socket, the
// same accept queue: no connection is dropped or refused). The new process binds nothing for the
// main and broadcast ports; worker i adopts listener i. Once the new process says kReady the old
// workers cancel their accepts (they keep the descriptors until they exit, so a failed upgrade
// can resume accepting); once all did (and their broadcast intake is closed), kAccept lets the new
// process arm its accepts. Only one process accepts at a time: connections arriving in between
// wait in the listen queue (never refused), and publications have one sequencer at a time. The
// HTTP broadcast port moves with them. A separate metrics or API port
// is NOT handed over (see README: use the main port for them, or accept a short gap).
//
// Per connection (old worker, worker_upgrade.cc). A WebSocket session is handed over when it is
// between frames: authenticated (kOpen), no partial inbound frame (FrameReader idle), no command
// queued or in flight (no RPC), nothing left to send. The worker cancels the connection's receive
// and waits for the cancellation (bytes that arrived meanwhile are processed normally; if that
// makes the session busy it is re-armed and retried), then encodes the session (ConnRecord: sid,
// identifiers, url + headers for later RPC env, cstate, subscriptions with istate and streams,
// built-in flags, ext protocol, deflate, ping period/precision, disconnect flags) and queues it
// for the controller, which sends the socket with SCM_RIGHTS. The old process keeps its descriptor
// and the connection parked (no reads, no writes) until kAck; then it frees the slot silently:
// no Disconnect RPC, no frame. The new process adopts the record on the same worker index: slot,
// session, index entries, ping schedule, receive armed — no Connect, no subscribe, no welcome.
// A connection still not handed over after --shutdown_timeout gets the ordinary server_restart
// close. Deflate needs no state (no context takeover). Ping schedule: the next ping is sent within
// one interval of adoption (same period and precision); a pending pong deadline is not carried.
//
// Sessions beyond a plain WebSocket (optional sections, tags 40–49): presence records (memory
// broker: the records move and the new store adopts them; redis: the membership moves), started
// SSE streams (their wire and ping schedule), TLS 1.3 connections on the compact record layer
// (suite, traffic secrets and sequence numbers both ways; the encrypted stream goes on), long-poll
// sessions (socketless: a placeholder descriptor rides along; the poll the old process holds open
// is answered at once so the client polls again, and the new process holds a poll for a session
// it has not adopted yet until the handover ends, then serves it or answers 401).
//
// What falls back to a reconnect (server_restart close): TLS connections still on OpenSSL (TLS
// 1.2, --ssl_compact=false: OpenSSL's state cannot be serialized portably), SSE streams not
// started, sessions that do not quiesce in time, records larger than kMaxRecord.
//
// Broadcasts during the handover: the new process is the only sequencer from kReady on.
//  - The new process HOLDS every publication it accepts (HTTP broadcast port, whispers,
//    Redis/NATS) from kReady until kDone, in arrival order, then releases them into its log: by
//    then every handed-over subscriber is in its index, so each gets every held publication
//    once, in order.
//  - The old process stops its broadcast intake before it moves the first connection: it hands
//    idle HTTP keep-alive connections (a broadcaster's) to the new process (a record with
//    http=true: only the socket and its port matter), moves busy ones once they are answered,
//    closes idle TLS ones, and every worker waits for the others (a barrier) and for its log to
//    be drained. Every publication the old process accepted is therefore delivered before any
//    connection leaves it, and none after.
//  - Redis/NATS pub/sub: both processes stay subscribed during the handover; the old delivers to
//    the connections it still holds, the new one holds what it gets. A pub/sub message that
//    arrives at both while a subscriber moves can be delivered twice or (if the new process had
//    no subscriber for the stream yet) missed: pub/sub carries no position to deduplicate on.
//    Exactly-once across the switch holds for HTTP broadcasts (and whispers from the new
//    process); for pub/sub, see docs/architecture.md ("Live upgrade") for the offset-based plan.
//  - --broker memory: offsets, history and cached sessions stay in the old process (not moved
//    yet); the new process starts a new epoch, so ext clients that ask for history after the
//    upgrade get it from the new epoch only.
//
// Failure. If the new process exits (bad flag, crash) before kReady, the old one logs its exit
// status and keeps serving (it never stopped accepting). If it dies during the handover (EOF on
// the control socket), the old process resumes accepting and un-parks every connection it has not
// got an ack for (its descriptor never left it); connections already acked were the new
// process's and are lost with it (their clients reconnect).
//
// Optional sections. After its fixed part a ConnRecord may carry tagged sections {tag:u8,
// length:u32, bytes}; a reader skips a tag it does not know (so a section can be added without a
// version bump). Tags 40–49 are the session transports' (presence, SSE, TLS, long polling).
//
// Ownership: Packet / ConnRecord are plain values; SendPacket/RecvPacket are stateless.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cable::upgrade {

// Environment variable naming the control socket in the new process.
inline constexpr const char* kFdEnv = "RINGCABLE_UPGRADE_FD";
// Largest encoded connection record (SEQPACKET message); bigger sessions fall back to a reconnect.
inline constexpr size_t kMaxRecord = 192 * 1024;

enum class Type : uint8_t { kListeners = 1, kReady, kAccept, kConn, kAck, kDone };

struct Packet {
  Type type = Type::kDone;
  std::string bytes;
  std::vector<int> fds;  // received descriptors are owned by the caller
};

// Blocking send of one message with its descriptors. False on error (errno kept).
bool SendPacket(int sock, const Packet& p);
// Blocking receive, at most `timeout_ms` (-1: forever). 1 = got one, 0 = timeout, -1 = EOF/error.
int RecvPacket(int sock, Packet* p, int timeout_ms);

struct SubRecord {
  std::string identifier;
  std::vector<std::string> streams;
  std::map<std::string, std::string> istate;
  bool builtin = false;
  bool has_istate = false;
};

// Everything a WebSocket session needs to go on in another process.
struct ConnRecord {
  uint64_t token = 0;  // old process: {generation:32, slot:32} on `worker`; echoed in kAck
  uint32_t worker = 0;
  std::string sid;
  std::string identifiers;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::map<std::string, std::string> cstate;
  std::vector<SubRecord> subs;
  bool ext = false;
  bool deflate = false;
  bool authenticated = true;
  bool needs_disconnect_rpc = false;
  bool rpc_free_auth = false;
  bool used_rpc = false;
  bool restorable = false;
  uint8_t ping_precision = 0;
  uint32_t ping_period = 0;
  // An idle HTTP keep-alive connection (no session; a broadcaster's, typically) rather than a
  // WebSocket session: only where it was accepted matters.
  bool http = false;
  uint8_t listener = 0;  // which listener accepted it (server::Listener: main, broadcast, API)

  // Optional sections (tags 40–49; see "Optional sections" above). Each is written only when set.
  // kTagPresence: the session holds (or may hold) presence records. With --broker memory the
  // records themselves come along (the new process's store adopts them, no event); with a remote
  // broker they stay in Redis and only the membership (and its touch schedule) moves.
  bool presence_joined = false;
  struct PresenceHeld {
    std::string stream;
    std::string id;
    std::string info_json;
  };
  std::vector<PresenceHeld> presence;
  // kTagSse: a started SSE stream rather than a WebSocket: the new process keeps writing events
  // (HTTP chunks) on the socket. The 200 head went out long ago; only the encoding matters.
  enum class Sse : uint8_t { kNone, kGet, kPost };  // GET: data events; POST: whole replies
  Sse sse = Sse::kNone;
  bool sse_raw = false;  // GET with raw=1: data events only, no pings
  // kTagTls: a TLS 1.3 connection on the compact record layer (tls::CompactState): the cipher
  // suite, and per direction the current traffic secret and the next record's sequence number.
  // The new process goes on with the same encrypted stream. Secrets are wiped by the users.
  bool tls = false;
  uint8_t tls_suite = 0;
  std::string tls_rx_secret;
  std::string tls_tx_secret;
  uint64_t tls_rx_seq = 0;
  uint64_t tls_tx_seq = 0;
  // kTagPoll: a long-poll session (no socket of its own: the packet carries a placeholder
  // descriptor, closed by the new process). Its poll id (naming the same worker index), the time
  // left before it expires without a poll, and the JSON lines queued for its next poll.
  bool poll = false;
  std::string poll_id;
  uint32_t poll_expires_in_ms = 0;
  std::string poll_queued;
};

// Tags of the optional sections that follow the fixed part of a ConnRecord.
enum class ConnTag : uint8_t { kPresence = 40, kSse = 41, kTls = 42, kPoll = 43 };

std::string Encode(const ConnRecord& r);
bool Decode(const std::string& bytes, ConnRecord* r);

std::string EncodeU64(uint64_t v);
uint64_t DecodeU64(const std::string& bytes);

}  // namespace cable::upgrade
