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
//   old → new  kMetricsListener   the separate --metrics_port listener (when kListeners said so)
//   new → old  kReady      the new process's workers run (not accepting yet)
//   old → new  kPubSubStreams     (pub/sub links only) the fence's name + this node's streams
//   new → old  kPubSubSubscribed  the new process is subscribed to them and to the fence
//   old → new  kPubSubCut  the fence was published and seen on every link ("1"), or not ("0")
//   old → new  kBrokerState(End)  (--broker memory) its state, in chunks, just before kAccept
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
// HTTP broadcast and REST API ports move with them. A separate --metrics_port listener is sent
// too (kMetricsListener): its thread serves it in both processes until the old one exits (the
// metrics server never shutdown()s its socket, it only closes its descriptor).
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
//  - Redis/NATS pub/sub (stream channels, the internal channel, the legacy broadcast channel):
//    the pub/sub fence below.
//  - --broker memory: once every old worker's intake is closed (nothing is stamped here any
//    more), and before kAccept (the new process stamps nothing before kDone anyway: it holds), the
//    old process sends MemoryBroker::ExportState() — epoch, stamp counter, each stream's offsets
//    and retained history, the cached sessions with their expiry — in kBrokerState chunks and a
//    kBrokerStateEnd; the new process imports it (same epoch) before it adopts any connection. So
//    history, resume (offsets + epoch) and session restore keep working across the upgrade.
//    Sessions cached in the old process after that (connections closed with server_restart when
//    they did not quiesce) stay behind; presence records too (such sessions fall back anyway).
//
// --embed_nats: SIGUSR2 is refused ("live upgrade refused: --embed_nats runs a nats-server that
// cannot be handed over; ...") and the process keeps serving: the new process's nats-server could
// not bind the ports the running one holds.
//
// Pub/sub fence. A pub/sub message carries no position both processes could agree on, so they
// agree on a cut in each link's message order instead. kListeners announces it; the new process
// then starts its cluster dropping everything its links deliver. After kReady the old process
// names a fence channel (`__ringcable_upgrade__.<pid>.<random>`, a valid NATS subject) and sends
// it with every stream it is subscribed to (kPubSubStreams); the new process subscribes to all of
// them and the fence, confirms (Redis: a PING answered after the SUBSCRIBEs; NATS: a flush) and
// says kPubSubSubscribed. The old process subscribes to the fence and publishes one message on it
// on each link (Redis: PUBLISH on its command connection once its own SUBSCRIBE is confirmed;
// NATS: SUB then PUB on its one connection). Each subscriber connection sees the fence at one
// point of its link's order; from there the old process drops what that link delivers and the
// new one stops dropping (and holds, like every publication before kDone). The old process moves
// no connection before every link delivered its fence and everything before it reached its log
// (then the usual barrier), so: before the cut, the old process delivers to every subscriber
// before it moves; after the cut, the new one delivers to every adopted subscriber after kDone.
// The new process's extra subscriptions are dropped after kDone (adopted subscribers hold theirs).
// Edge cases:
//  - Redis: one server executes PUBLISH commands in one order and every subscriber connection
//    gets them in that order, so the cut is the same for both, whoever publishes. A Redis Cluster
//    propagates pub/sub between nodes over its bus; two subscribers on different nodes can see
//    publications from different nodes interleaved differently around the fence (a message
//    published on another node at that instant can be missed or repeated).
//  - NATS: order is kept per publisher. Everything this process published before the fence (on
//    the same connection) is before it for both; a message published by another connection at the
//    same instant can fall on different sides of the fence for the two subscribers (missed or
//    repeated). The window is the server's fan-out time of one message.
//  - A link down when the handover starts, or a fence not back within 5 s, or a new process that
//    does not confirm within 5 s: no cut (kPubSubCut "0"): both deliver what pub/sub brings, as
//    without a fence (possible loss or repetition during the handover), logged as a warning.
//  - The new process dies after the cut: the old one un-parks what it has no ack for and ends
//    the fence (delivers again), but what came through pub/sub between the cut and that moment
//    was the new process's to deliver: lost for the connections that stay.
//  - A subscription the old process confirms after kPubSubStreams (a command that was in flight)
//    is not in the list: the new process subscribes to that stream only when the connection is
//    adopted, and messages between the cut and that SUBSCRIBE are missed for it.
//  - redisx: the stream consumer group is not fenced (both processes consume; an entry goes to
//    one of them and is published through pub/sub, so it is covered when pub/sub is).
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

enum class Type : uint8_t {
  kListeners = 1,
  kReady,
  kAccept,
  kConn,
  kAck,
  kDone,
  // 32–39: process state beside the connections (see the DESIGN notes above).
  kMetricsListener = 32,   // old → new, right after kListeners when it announced one: its fd
  kPubSubStreams = 33,     // old → new, after kReady: EncodeStrings({fence, stream...})
  kPubSubSubscribed = 34,  // new → old: subscribed to the fence and every stream, confirmed
  kPubSubCut = 35,         // old → new: "1" the fence is set (cut), "0" it is not (deliver all)
  kBrokerState = 36,       // old → new, before kAccept: a chunk of MemoryBroker::ExportState()
  kBrokerStateEnd = 37,    // old → new: the state is complete (EncodeU64 of its size)
};
// Largest chunk of the broker state in one kBrokerState message.
inline constexpr size_t kBrokerStateChunk = 128 * 1024;

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

// A list of strings (length-prefixed), for the pub/sub fence messages.
std::string EncodeStrings(const std::vector<std::string>& v);
bool DecodeStrings(const std::string& bytes, std::vector<std::string>* v);

std::string EncodeU64(uint64_t v);
uint64_t DecodeU64(const std::string& bytes);

}  // namespace cable::upgrade
