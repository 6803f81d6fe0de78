// server::Worker — one thread, one io_uring, and every connection that ring accepted.
//
// Ownership: a Worker owns its Ring, its provided-buffer ring, its listeners, its connection slab,
// its hub::LocalIndex and its disconnect queue. Only the worker's thread touches them. Other
// threads reach a worker only through (1) the BroadcastLog, which every worker consumes in order,
// (2) its Inbox (RPC completions, shutdown), and (3) Wake(), the doorbell: MSG_RING when the caller
// is itself a worker, an eventfd write otherwise, sent only when the target is about to sleep or
// asleep.
//
// Connections are addressed by {slot, generation}; RPC calls and index entries carry that pair,
// never a pointer, so a late completion for a closed connection is recognised and dropped. A slot
// is freed only once no io_uring operation on it is outstanding.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "auth/auth.h"
#include "cluster/cluster.h"
#include "common/inbox.h"
#include "common/result.h"
#include "http/http.h"
#include "hub/frame.h"
#include "hub/local_index.h"
#include "hub/message.h"
#include "hub/remote_broker.h"
#include "hub/wire.h"
#include "metrics/metrics.h"
#include "protocol/broadcast.h"
#include "protocol/command.h"
#include "protocol/encode.h"
#include "ring/ring.h"
#include "rpc/client.h"
#include "server/counters.h"
#include "server/session.h"
#include "server/shared.h"
#include "ws/reader.h"

namespace cable::upgrade {
struct ConnRecord;
}

namespace cable::server {

constexpr uint32_t kNil = UINT32_MAX;

// The transport that carries a connection's session: WebSocket (worker_ws.cc), Server-Sent
// Events (worker_sse.cc) or long polling (worker_poll.cc). The session layer never looks at it.
enum class Transport : uint8_t { kWs, kSse, kPoll };

enum class ConnState : uint8_t {
  kFree,
  kHttp,        // reading an HTTP request (upgrade, health, broadcast)
  kConnecting,  // upgraded; Connect RPC in flight
  kOpen,        // authenticated Action Cable session
  kClosing,     // flushing the last frames; no more input is processed
};

// A long-poll session: a connection slot without a socket, kept between poll requests
// (worker_poll.cc), its state in the slot's HttpState (which a socketless slot has no other use
// for, so other connections pay nothing for it). `waiter` names the HTTP connection of the poll
// request waiting for output, on this worker or another one.
struct PollState {
  std::string id;             // "<worker>.<random>": the worker that owns the session
  bool has_waiter = false;    // a poll request is open
  bool initial = false;       // the open request is the one that created the session
  int waiter_worker = -1;     // worker holding that request's connection
  uint64_t waiter_token = 0;  // its {generation, slot}
  int64_t respond_at_ms = 0;  // answer the open request then (204 when nothing is queued)
  int64_t flush_at_ms = 0;    // output queued: answer then (--poll_flush_interval)
  int64_t expire_at_ms = 0;   // no poll request until then: the session expires
};

struct HttpState {
  std::string buf;
  // --handshake_timeout: the connection is dropped unless it upgrades (or completes its next
  // request) by then; renewed each time a request is answered.
  int64_t deadline_ms = 0;
  // A broadcast waits for the cluster's answer (pub/sub): its response (201/501) is written when
  // the ack arrives, and pipelined requests behind it wait.
  bool awaiting_cluster = false;
  // A long-poll request waits for its session's answer (on this worker or another one).
  bool awaiting_poll = false;
  bool sse_deferred = false;  // an SSE request waits for earlier answers to be sent
  // SSE before its stream starts (the connection is then past kHttp): the identifiers the request
  // subscribes to. The 200 head and the events queued meanwhile go out once each is confirmed.
  std::vector<std::string> sse_identifiers;
  std::vector<std::pair<std::string, std::string>> cors;  // for the SSE head or its refusal
  // The request being answered is a REST API one (counted in the API metrics).
  bool api_request = false;
  std::unique_ptr<PollState> poll;  // a long-poll session's slot (no socket, no request)
};

// TLS state of a connection accepted on a TLS listener (null for plain ones). The send queue of
// such a connection holds ciphertext frames first (the oldest `cipher_frames` entries from
// sendq_head, ready for the socket) and plaintext frames after them, which StartSend encrypts in
// order just before sending (worker_tls.cc).
struct ConnTls {
  explicit ConnTls(const tls::ServerContext& ctx) : session(ctx) {}
  explicit ConnTls(const tls::CompactState& state) : session(state) {}  // live upgrade
  tls::Session session;
  uint32_t cipher_frames = 0;
  bool got_bytes = false;  // anything received (an EOF before the handshake then counts as error)
  bool counted_compact = false;  // counted in tls_compact_total (the session left OpenSSL)
};

// Which of a worker's listeners accepted a connection; it decides what the port serves.
enum class Listener : uint8_t {
  kMain = 0,  // WebSocket paths, health, metrics (when on the main port), API/broadcast if here
  kBroadcast = 1,  // a separate --http_broadcast_port (and the API when --api_port equals it)
  kApi = 2,        // a separate --api_port: the REST API only
};
inline constexpr int kListenerCount = 3;

// A bound address for one listener (main.cc resolves them, each worker binds its own socket).
struct ListenAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

struct Conn {
  int fd = -1;
  uint32_t gen = 0;
  ConnState state = ConnState::kFree;
  Transport transport = Transport::kWs;
  hub::Wire wire = hub::Wire::kWs;  // encoding of the broadcast frames this connection gets
  bool hold_output = false;  // SSE before its 200 / long polling: queued, not sent by FlushSends
  bool sse_raw = false;      // SSE GET with raw=1: only data events
  Listener listener = Listener::kMain;
  bool recv_armed = false;
  bool send_inflight = false;
  bool read_paused = false;      // input backlog too large: recv cancelled until it drains
  bool reading_stopped = false;  // malformed frame: stop reading for good (as anycable-go does)
  bool dirty = false;
  bool closing_listed = false;
  bool close_after_flush = false;
  bool keep_alive = true;
  bool in_wheel = false;
  bool deflate = false;  // permessage-deflate negotiated: data frames to this client are compressed
  // Live upgrade (worker_upgrade.cc): 1 = receive being cancelled before the handover, 2 = sent
  // to the new process, parked (no reads, no writes) until its ack.
  uint8_t handover = 0;
  uint8_t ping_precision = 0;  // 0 s, 1 ms, 2 ns
  uint8_t inflight_ops = 0;
  uint32_t ping_period = 0;  // ticks; 0 = no pings
  // --pong_timeout (ext sessions): a ping is unanswered until this time; 0 = nothing pending.
  int64_t pong_deadline_ms = 0;
  uint32_t ping_due = 0;
  uint32_t ping_prev = kNil;
  uint32_t ping_next = kNil;
  uint32_t send_op = kNil;
  int64_t send_started_ms = 0;
  int64_t close_deadline_ms = 0;
  ws::FrameReader reader;
  std::vector<hub::Frame*> sendq;
  uint32_t sendq_head = 0;
  uint32_t head_offset = 0;
  uint64_t pending_bytes = 0;
  std::unique_ptr<HttpState> http;
  std::unique_ptr<Session> session;
  std::unique_ptr<ConnTls> tls;  // main and broadcast listeners with --ssl_cert/--ssl_key only
  PollState* poll_state() const { return http ? http->poll.get() : nullptr; }
};

struct InboxItem {
  // kBrokerReply: the broker thread's answer (--broker redis|nats); kPollRequest: a poll request
  // for a session this worker owns, from the worker holding its connection; kPollReply: the
  // complete HTTP response for such a connection. kHandover*: live upgrade (old process); kAdopt:
  // a connection from the old process (new one).
  enum class Kind : uint8_t {
    kRpcDone,
    kShutdown,
    kClusterAck,
    kBrokerReply,
    kPollRequest,
    kPollReply,
    kHandoverBegin,
    kHandoverAck,
    kHandoverAbort,
    kAdopt,
    kAcceptResume
  };
  InboxItem* next = nullptr;
  Kind kind = Kind::kRpcDone;
  rpc::CallPtr call;
  uint64_t token = 0;  // kClusterAck / kPoll*: {generation:32, slot:32} of the HTTP connection
  bool ok = false;     // kClusterAck: the broker took every publication
  std::unique_ptr<hub::BrokerReply> broker_reply;  // kBrokerReply
  int from_worker = -1;  // kPollRequest: the worker holding the connection
  int status = 0;        // kPollReply
  std::string poll_id;   // kPollRequest
  std::string bytes;     // kPollRequest: the request body (JSONL); kPollReply: the response
  int fd = -1;           // kAdopt: the socket (bytes: the encoded upgrade::ConnRecord)
};

class Worker : public rpc::CompletionSink,
               public cluster::AckSink,
               public hub::BrokerReplySink,
               private ws::FrameReader::Handler,
               private hub::LocalIndex::Observer {
 public:
  Worker(Shared& shared, int index);
  ~Worker() override;

  // Binds this worker's listeners. Main thread, before Start().
  // `broadcast` / `api`: separate ports, or null when served on the main one (or not at all).
  cable::Result<bool, std::string> Init(const ListenAddress& main, const ListenAddress* broadcast,
                                        const ListenAddress* api);
  // Starts the thread, which creates the ring (SINGLE_ISSUER ties a ring to the thread that creates
  // it); returns once the ring is ready, or the reason it could not be set up.
  cable::Result<bool, std::string> Start();
  void Join();

  // Any thread.
  void OnRpcDone(rpc::CallPtr call) override;
  void OnRpcBatchEnd() override;
  void OnClusterAck(uint64_t token, bool ok) override;
  void OnBrokerReply(std::unique_ptr<hub::BrokerReply> reply) override;
  void RequestShutdown();
  // Live upgrade (worker_upgrade.cc). Before Init: listeners inherited from the old process (-1:
  // bind a new one). Any thread: start / abort handing connections over, an ack for one, a
  // connection to adopt (takes `fd`).
  void InheritListeners(int main_fd, int bcast_fd, int api_fd) {
    inherited_fds_[0] = main_fd;
    inherited_fds_[1] = bcast_fd;
    inherited_fds_[2] = api_fd;
    accept_held_ = true;
  }
  int listen_fd(int i) const { return listen_fds_[i]; }
  void BeginHandover();
  void AbortHandover();
  void OnHandoverAck(uint64_t token);
  void Adopt(int fd, std::string record);
  void ResumeAccepts();  // new process: the old one no longer accepts
  // Wakes the worker if it announced it is going to sleep (after a push to something it reads).
  void WakeIfSleeping() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_relaxed) && sleeping_.exchange(false)) Wake();
  }
  void Wake();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  const Counters& counters() const { return counters_; }
  // Valid once Start() returned successfully.
  int ring_fd() const { return ring_.fd(); }

 private:
  struct SendOp {
    uint32_t conn_slot;
    uint32_t conn_gen;
    uint32_t frames;
    msghdr msg;
    iovec iov[64];
  };

  void Run();
  void Loop();
  void OnStreamChange(const std::string& stream, bool up) override;  // LocalIndex::Observer
  void OnClusterAckItem(uint64_t token, bool ok);
  // Answers a broadcast request (renews the keep-alive deadline, closes after it unless kept
  // alive); true when the connection stays open for more requests.
  bool FinishBroadcastRequest(Conn& c, uint32_t slot, int status);
  // {generation:32, slot:32}: how RPC calls and cluster acks name a connection across threads.
  static uint64_t ConnToken(const Conn& c, uint32_t slot) {
    return (static_cast<uint64_t>(c.gen) << 32) | slot;
  }
  Conn* LookupToken(uint64_t token) {
    return Lookup(static_cast<uint32_t>(token), static_cast<uint32_t>(token >> 32));
  }
  void Dispatch(io_uring_cqe* cqe);
  int64_t NowMs() const { return now_ms_; }
  void UpdateClock();

  // io
  void ArmAccept(int listener);
  void ArmRecv(Conn& c, uint32_t slot);
  void ArmDoorbell();
  void OnAccept(int listener, io_uring_cqe* cqe);
  void OnRecv(uint32_t slot, uint32_t gen, io_uring_cqe* cqe);
  void OnSend(uint32_t op_index, io_uring_cqe* cqe);
  void OnBytes(Conn& c, uint32_t slot, const char* data, size_t len);
  // TLS (worker_tls.cc): ciphertext in → handshake / decrypt → OnBytes; plaintext queued frames →
  // ciphertext frames at StartSend.
  void OnTlsBytes(Conn& c, uint32_t slot, const char* data, size_t len);
  void OnTlsFailure(Conn& c, uint32_t slot, const char* what);
  void TlsEncryptQueued(Conn& c);
  void TlsQueueOutput(Conn& c);
  // A closing connection's close_notify, queued after everything sent; false if none is due.
  bool TlsShutdown(Conn& c, uint32_t slot);
  void FlushSends();
  void StartSend(Conn& c, uint32_t slot);
  void SubmitRpc(rpc::CallPtr call);  // deferred: Loop() flushes the rpc client once per turn
  void Enqueue(Conn& c, uint32_t slot, hub::Frame* frame);  // takes a reference for the queue
  void EnqueueText(Conn& c, uint32_t slot, std::string_view payload);
  void EnqueueRaw(Conn& c, uint32_t slot, std::string_view bytes);
  void MarkDirty(Conn& c, uint32_t slot);
  void DropUnsentFrames(Conn& c);

  // lifecycle
  uint32_t AllocSlot();
  Conn* Lookup(uint32_t slot, uint32_t gen);
  void CloseWithFrame(Conn& c, uint32_t slot, uint16_t code, std::string_view reason);
  void CloseWithDisconnect(Conn& c, uint32_t slot, std::string_view reason, bool reconnect,
                           uint16_t code, std::string_view close_reason);
  void BeginClosing(Conn& c, uint32_t slot);  // stops input, leaves the hub, queues Disconnect RPC
  void ForceClose(Conn& c, uint32_t slot);
  void MaybeFinishClose(Conn& c, uint32_t slot);
  void FreeSlot(Conn& c, uint32_t slot);
  void PauseReading(Conn& c, uint32_t slot);
  void MaybeResumeReading(Conn& c, uint32_t slot);

  // http
  void OnHttpBytes(Conn& c, uint32_t slot);
  void HandleUpgrade(Conn& c, uint32_t slot, const http::Request& req);
  // POST /_broadcast, and the REST API's POST <api_path>/publish (`key`: the bearer token, empty
  // = no auth).
  bool HandleBroadcastRequest(Conn& c, uint32_t slot, const http::Request& req,
                              const std::string& key);
  // REST API GET <api_path>/presence/<stream>/users (and 404s under <api_path>).
  void HandleApiRequest(Conn& c, uint32_t slot, const http::Request& req);
  void Respond(Conn& c, uint32_t slot, int status, std::string_view body, bool close);

  // ---- transport seam (worker_transport.cc) ----
  // What the session layer calls to reach its client, whatever the transport: a reply as JSON
  // text (EnqueueText: a WebSocket text frame, an SSE event, a JSON line), a shared frame built
  // for the connection's wire (Enqueue), and the end of the session (CloseWithFrame: the
  // WebSocket close code and reason, which the HTTP transports map to a status or the end of the
  // stream; CloseWithDisconnect: a disconnect reply first).
  // A session for a new connection from its request: sid, url, proxied headers, REMOTE_ADDR.
  std::unique_ptr<Session> NewSession(const Conn& c, const http::Request& req, int peer_fd);
  // Restore, local auth (JWT / noauth / norpc) or the Connect RPC; the request's commands (SSE,
  // long polling) are already in the session's pending queue.
  void StartSession(Conn& c, uint32_t slot, const std::optional<std::string>& jwt,
                    const std::string& restore_sid);
  // The session ran every queued command and has none in flight (worker_session.cc calls it):
  // an SSE stream starts, a long-poll request may be answered.
  void OnCommandsDrained(Conn& c, uint32_t slot);
  // CORS headers of the HTTP transports (anycable-go's server/cors.go).
  void AppendCorsHeaders(const http::Request& req,
                         std::vector<std::pair<std::string, std::string>>* headers) const;

  // The request body (Content-Length or chunked) of an SSE or poll request, at most `max` bytes;
  // *total = bytes of head + body.
  enum class BodyStatus : uint8_t { kOk, kIncomplete, kTooLarge, kBad };
  static BodyStatus ReadRequestBody(const std::string& buf, const http::Request& req, size_t max,
                                    std::string* body, size_t* total);
  // A complete response with the CORS headers of `req` (the HTTP transports).
  void RespondHttp(Conn& c, uint32_t slot, const http::Request& req, int status,
                   std::string_view body, std::string_view content_type,
                   std::vector<std::pair<std::string, std::string>> headers, bool close);

  // WebSocket transport (worker_ws.cc)
  void WsEnqueueText(Conn& c, uint32_t slot, std::string_view payload);
  void ApplyPingParams(Conn& c, const http::Request& req);  // ?pi= and ?ptp=

  // Server-Sent Events (worker_sse.cc)
  // true when the request was handled; false: its body is incomplete (wait for more bytes).
  bool HandleSse(Conn& c, uint32_t slot, const http::Request& req);
  void SseStart(Conn& c, uint32_t slot);  // every subscription confirmed: 200 + queued events
  void SseRefuse(Conn& c, uint32_t slot, int status);  // before the 200: a status, then close

  // Long polling (worker_poll.cc)
  bool HandlePoll(Conn& c, uint32_t slot, const http::Request& req);
  void OnPollRequest(int from_worker, uint64_t token, const std::string& poll_id,
                     const std::string& body);  // on the owner of the session
  // The owner's answer (status, poll id for the header, JSONL body), on the worker holding the
  // request's connection; SendPollReply hands it there.
  void OnPollReply(uint64_t token, int status, const std::string& poll_id, std::string body);
  void SendPollReply(int worker, uint64_t token, int status, const std::string& poll_id,
                     std::string body);
  void PollAnswer(Conn& p, uint32_t slot, int status);  // answer the open request, if any
  void PollDirty(Conn& p, uint32_t slot);               // output queued
  void PollClosed(Conn& p, uint32_t slot);              // the session ended: tombstone
  void ProcessPollTimers();
  void PollTimerAt(Conn& p, uint32_t slot, int64_t ms);

  // Action Cable session
  void OnText(std::string_view message) override;
  void OnBinary(std::string_view message) override;
  void OnClose(uint16_t code, std::string_view reason) override;
  void OnControlBytes(std::string_view bytes) override;
  void OnProtocolError(uint16_t close_code) override;
  void OnClientMessage(std::string_view message);
  void DrainPending(Conn& c, uint32_t slot);
  void ExecuteCommand(Conn& c, uint32_t slot, const std::string& frame);
  void SubmitCommand(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd);
  void OnConnectDone(Conn& c, uint32_t slot, rpc::Call& call);
  void OnCommandDone(Conn& c, uint32_t slot, rpc::Call& call);
  void ApplyCommandResponse(Conn& c, uint32_t slot, SubState* sub,
                            const anycable::CommandResponse& resp, bool subscribing);
  void RemoveSubscription(Session& s, SubState* sub);
  void FillEnv(const Conn& c, anycable::Env* env, const SubState* sub) const;
  void QueueDisconnectRpc(Conn& c);
  void StartPings(Conn& c, uint32_t slot);  // first ping at a jittered point of the interval

  // Reliable streams (--broker memory; worker_streams.cc)
  // `history` command, or the history of a confirmed subscribe: missed messages with their
  // positions, then confirm_history, or reject_history alone.
  void HandleHistory(Conn& c, uint32_t slot, const std::string& identifier,
                     const std::string& history_json);
  // Session restore: true when the cached session of `old_sid` was taken over (restored welcome
  // sent, streams back in the index, no Connect RPC).
  bool TryRestoreSession(Conn& c, uint32_t slot, const std::string& old_sid);
  void CommitSessionForRestore(const Conn& c);  // on close of an ext session
  // Applies a cached session taken from the broker (restored welcome, streams, no Connect RPC).
  void ApplyRestoredSession(Conn& c, uint32_t slot, const std::string& old_sid,
                            hub::CachedSession cached);
  void StartConnectRpc(Conn& c, uint32_t slot);  // the Connect RPC of an upgraded connection

  // Remote broker (--broker redis; worker_broker.cc): the same features, asynchronously.
  // Publishes an HTTP broadcast batch: stamped by the broker thread, then pub/sub; the HTTP
  // answer follows the pub/sub ack.
  void PublishViaRemoteBroker(Conn& c, uint32_t slot, std::vector<protocol::BroadcastItem> items);
  void RequestRemoteHistory(Conn& c, uint32_t slot, SubState* sub,
                            const protocol::HistoryRequest& req);
  void OnBrokerReplyItem(std::unique_ptr<hub::BrokerReply> reply);
  void OnRemoteHistoryReply(hub::BrokerReply& reply);
  void OnRemoteSessionReply(hub::BrokerReply& reply);
  // Live delivery of a remote-stamped publication to one subscription: false = skip it (already
  // sent, or buffered behind a pending history reply or a gap repair it started).
  bool AdmitRemote(Conn& c, hub::Subscription* sub, uint32_t link, hub::Message& msg);
  // Sends `msg` to the subscription when its offset is new for the link (history / buffered).
  // `below`: offsets under it (the link's range low end before this reply) were never sent.
  void SendRemoteOnce(Conn& c, uint32_t slot, hub::Subscription& sub, uint32_t link,
                      hub::Message& msg, uint64_t below);
  // The subscription is going away: its held publications are released (a late reply then finds
  // nothing, and a new subscription at the same address never inherits them).
  void ForgetPendingHistory(const hub::Subscription* sub);
  void ExpirePongs();

  // Presence (--broker memory; worker_presence.cc)
  // Ext `join` / `leave` / `presence` commands.
  void HandlePresenceCommand(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd);
  // Joins the subscription's presence stream (istate $p) with the raw "presence" JSON; an error
  // reply when that is impossible.
  void PresenceJoin(Conn& c, uint32_t slot, SubState* sub, const std::string& presence_json);
  // RPC CommandResponse.presence (join / leave) for `sub`.
  void ApplyRpcPresence(Conn& c, uint32_t slot, SubState* sub, const anycable::PresenceResponse& p);
  void PresenceLeaveSub(Session& s, const SubState* sub);  // unsubscribe: leave its stream
  void PublishPresenceEvents(const std::vector<hub::PresenceStore::Event>& events);
  void SweepPresence();  // worker 0, about once a second
  // --broker redis|nats: presence lives in the remote store (the broker thread;
  // worker_presence.cc).
  bool RemotePresence() const {
    return shared_.remote_broker && shared_.remote_broker->presence_enabled();
  }
  bool HasPresence() const { return shared_.presence || RemotePresence(); }
  void OnRemotePresenceReply(hub::BrokerReply& reply);
  void TouchRemotePresence();  // every --presence_ttl / 2: this worker's live sessions

  // RPC-less auth and channels (worker_auth.cc)
  static std::optional<std::string> ExtractJwt(const config::Config& cfg, const http::Request& req,
                                               const http::UpgradeRequest& up);
  // true: the connection was opened or refused here; false: ask the Connect RPC.
  bool AuthenticateLocally(Conn& c, uint32_t slot, const std::optional<std::string>& token);
  void OpenLocalSession(Conn& c, uint32_t slot, std::string identifiers);
  // true: handled here (confirmed, rejected, or rejected because of --norpc).
  bool HandleBuiltinSubscribe(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd);
  void HandleWhisper(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd);
  void QueueOrphanDisconnect(const rpc::Call& connect);
  void ProcessDisconnectQueue();

  // broadcasts
  void ProcessInbox();
  void ProcessBroadcasts();
  void DeliverPublication(hub::Message& msg);
  void DeliverRemoteDisconnect(hub::Message& msg);
  void PublishLocal(hub::Message* msg);
  void FlushPendingPublications();
  void NotifyWorkers();

  // timers
  void ProcessTicks();
  void PingWheelInsert(Conn& c, uint32_t slot);
  void PingWheelRemove(Conn& c);
  void SendPing(Conn& c, uint32_t slot);
  void StartShutdown();
  bool ShutdownComplete() const;
  bool AcceptsDisarmed() const {
    for (bool armed : accept_armed_) {
      if (armed) return false;
    }
    return true;
  }

  // Live upgrade (worker_upgrade.cc)
  void PostItem(InboxItem* item);
  void OnHandoverBegin();
  void OnHandoverAbort();
  void OnHandoverAckItem(uint64_t token);
  void AdoptConnection(int fd, const std::string& record);
  void ProgressHandover();  // every loop turn while handing over
  void HandoverTick();      // every tick: broadcast intake, deadline
  bool Quiescent(const Conn& c) const;
  void SendHandover(Conn& c, uint32_t slot);
  void SendHttpHandover(Conn& c, uint32_t slot);  // an idle HTTP keep-alive connection
  // Session transports' sections of the record (tags 40–49).
  void ExportPresence(const Session& s, upgrade::ConnRecord* r) const;
  void AdoptPresence(Session& s, const upgrade::ConnRecord& r);
  bool ExportTls(const Conn& c, upgrade::ConnRecord* r) const;  // false: not compact and quiet
  bool AdoptTls(Conn& c, upgrade::ConnRecord* r);               // false: unusable state
  static void WipeTlsSecrets(upgrade::ConnRecord* r);
  void ExportPoll(Conn& c, upgrade::ConnRecord* r);
  void AdoptPoll(Conn& c, uint32_t slot, upgrade::ConnRecord& r);
  void AnswerOpenPolls();  // old process: open polls answered at once, so their clients poll anew
  // New process: polls for sessions not adopted yet wait until the handover ends (then they are
  // served, or get 401 if their session never came).
  struct HeldPoll {
    int from_worker;
    uint64_t token;
    std::string poll_id;
    std::string body;
  };
  std::vector<HeldPoll> held_polls_;
  void ReplayHeldPolls();
  void FallbackClose(Conn& c, uint32_t slot, const char* why);
  void OnAcceptResume();
  // New process: no accepting until the old process stopped (one sequencer at a time).
  bool accept_held_ = false;
  enum class Handover : uint8_t { kNone, kActive };
  Handover handover_ = Handover::kNone;
  bool intake_reported_ = false;
  int64_t handover_deadline_ms_ = 0;
  uint32_t handover_cursor_ = 0;
  int inherited_fds_[kListenerCount] = {-1, -1, -1};
  std::string NewSid();

  Shared& shared_;
  const config::Config& cfg_;
  const auth::StreamsOptions streams_opts_ = StreamsOptionsFrom(cfg_);
  static auth::StreamsOptions StreamsOptionsFrom(const config::Config& cfg);
  const int index_;
  ring::Ring ring_;
  ring::BufRing bufs_;
  int listen_fds_[kListenerCount] = {-1, -1, -1};
  bool accept_armed_[kListenerCount] = {false, false, false};
  int64_t accept_retry_ms_ = 0;
  int event_fd_ = -1;
  uint64_t doorbell_buf_ = 0;
  std::thread thread_;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> ring_ready_{false};
  Inbox<InboxItem> inbox_;
  Counters counters_;

  std::deque<Conn> conns_;
  std::vector<uint32_t> free_slots_;
  std::vector<uint32_t> dirty_;
  std::vector<uint32_t> rearm_;
  std::vector<uint32_t> closing_;
  std::vector<std::unique_ptr<SendOp>> send_ops_;
  std::vector<uint32_t> free_send_ops_;
  hub::LocalIndex index_map_;
  std::deque<hub::Message*> pending_publish_;
  std::deque<rpc::CallPtr> disconnect_queue_;
  double disconnect_tokens_ = 0;
  int64_t disconnect_last_ms_ = 0;
  int outstanding_disconnects_ = 0;
  int outstanding_calls_ = 0;
  // --max-conn: this worker's share; 0 = unlimited. Excess connections wait in the listen backlog.
  size_t max_conns_ = 0;
  size_t live_conns_ = 0;
  uint64_t queued_bytes_ = 0;  // sum of every connection's pending_bytes
  bool AcceptAllowed() const { return max_conns_ == 0 || live_conns_ < max_conns_; }

  // --handshake_timeout (slowloris): HTTP-state connections as a min-heap by deadline. Entries are
  // {slot, gen}, so one for a connection that upgraded or closed is simply dropped when popped.
  struct HttpDeadline {
    int64_t ms;
    uint32_t slot;
    uint32_t gen;
    bool operator>(const HttpDeadline& o) const { return ms > o.ms; }
  };
  std::vector<HttpDeadline> http_deadlines_;
  // --pong_timeout: {deadline, slot, gen} min-heap; an entry whose deadline no longer matches the
  // connection's pong_deadline_ms (answered, or a newer ping) is dropped when popped.
  std::vector<HttpDeadline> pong_deadlines_;
  int64_t next_sweep_ms_ = 0;           // worker 0: next MemoryBroker::Sweep
  int64_t next_presence_touch_ms_ = 0;  // next TouchRemotePresence
  // --broker redis: subscriptions waiting for a history reply, with the live publications of
  // their streams that arrived meanwhile (one reference each), sent after the reply in order.
  struct PendingHistory {
    uint64_t request_id = 0;
    std::vector<std::pair<uint32_t, hub::Message*>> buffer;  // (link, message)
    bool overflow = false;
    // A gap repair (a live offset skipped ahead): no confirm/reject frame, commands not held.
    bool internal = false;
  };
  std::unordered_map<const hub::Subscription*, PendingHistory> pending_history_;
  uint64_t next_history_id_ = 0;  // client requests even, gap repairs odd (see NextHistoryId)
  uint64_t NextHistoryId(bool internal) {
    next_history_id_ += 2;
    return next_history_id_ | (internal ? 1 : 0);
  }
  // Upgrades waiting for a session restore answer: the JWT of the request, for the fallback.
  std::unordered_map<uint64_t, std::optional<std::string>> restore_jwt_;
  // Long polling: this worker's sessions by poll id; ended sessions' last lines (a disconnect),
  // answered with 401 to the next poll for --poll_keepalive_timeout; timers {ms, slot, gen}.
  std::unordered_map<std::string, uint32_t> polls_;
  struct PollTombstone {
    std::string body;
    int64_t expires_ms;
  };
  std::unordered_map<std::string, PollTombstone> poll_tombstones_;
  std::vector<HttpDeadline> poll_timers_;
  int64_t next_tombstone_sweep_ms_ = 0;
  void WatchHandshake(Conn& c, uint32_t slot);  // sets c.http->deadline_ms and tracks it
  void ExpireHandshakes();                      // on the tick

  // Ping wheel: one bucket per 100 ms tick.
  static constexpr int64_t kTickMs = 100;
  static constexpr uint32_t kWheelSize = 1024;
  std::vector<uint32_t> wheel_;
  uint32_t tick_ = 0;
  int64_t next_tick_ms_ = 0;
  int64_t now_ms_ = 0;
  hub::Frame* tick_ping_[2][3] = {};  // [WebSocket, SSE][precision]
  hub::Frame* tick_native_ping_ = nullptr;

  bool stopping_ = false;
  bool closing_slow_client_ = false;
  int64_t stop_deadline_ms_ = 0;
  bool notify_pending_ = false;
  bool rpc_unflushed_ = false;  // SubmitRpc since the last rpc::Client::Flush
  std::vector<bool> wake_targets_;

  // Per-thread codecs.
  protocol::CommandDecoder decoder_;
  protocol::BroadcastParser broadcast_parser_;
  protocol::MessageEncoder message_encoder_;
  std::mt19937_64 rng_;

  std::unique_ptr<char[]> tls_plain_;  // decrypted bytes of one SSL_read (TLS workers only)

  // Set while feeding a connection's FrameReader (the Handler callbacks act on it).
  Conn* cur_conn_ = nullptr;
  uint32_t cur_slot_ = 0;
};

// Metrics (src/metrics): every worker's counters and the RPC stats, read with relaxed loads from
// the calling thread (a worker serving a scrape, the metrics server or the log reporter); never
// blocks a worker. Requires shared.workers and shared.rpc to be set.
metrics::Snapshot SampleMetrics(const Shared& shared);
// Prometheus text for GET <metrics_http>, with --metrics_tags as labels (validated by main).
std::string RenderMetrics(const Shared& shared);

}  // namespace cable::server
