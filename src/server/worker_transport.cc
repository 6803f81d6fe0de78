// Worker: the seam between the session layer and the transports. The session layer (commands,
// RPC, subscriptions, history, presence) queues replies as JSON text or shared frames and ends
// sessions with a WebSocket-style code and reason; this file turns those calls into the
// connection's transport (WebSocket frames, SSE events, long-poll JSON lines) and builds the
// session of a new connection from its HTTP request, whatever the transport.
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/log.h"
#include "protocol/transport_encode.h"
#include "server/worker.h"
#include "ws/frame.h"

namespace cable::server {
namespace {
std::string PeerAddress(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, buf, sizeof(buf));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}
}  // namespace

void Worker::EnqueueText(Conn& c, uint32_t slot, std::string_view payload) {
  switch (c.transport) {
    case Transport::kWs:
      WsEnqueueText(c, slot, payload);
      return;
    case Transport::kSse: {
      std::string chunk = protocol::EncodeSseReply(payload, c.wire == hub::Wire::kSse, c.sse_raw);
      if (!chunk.empty()) EnqueueRaw(c, slot, chunk);
      return;
    }
    case Transport::kPoll:
      EnqueueRaw(c, slot, protocol::JsonLine(payload));
      return;
  }
}

void Worker::CloseWithFrame(Conn& c, uint32_t slot, uint16_t code, std::string_view reason) {
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  switch (c.transport) {
    case Transport::kWs:
      EnqueueRaw(c, slot, ws::BuildCloseFrame(code, reason));
      BeginClosing(c, slot);
      return;
    case Transport::kSse:
      if (c.hold_output) {
        // Before the 200 (spec Appendix D): authentication failed → 401; a Connect that failed
        // with an error, a rejected or failed subscription → 400.
        const bool auth_failed =
            !(c.session && c.session->authenticated) && code != ws::close_code::kInternalError;
        SseRefuse(c, slot, auth_failed ? 401 : 400);
        return;
      }
      EnqueueRaw(c, slot, protocol::kLastChunk);  // the stream ends cleanly
      BeginClosing(c, slot);
      return;
    case Transport::kPoll:
      PollClosed(c, slot);
      return;
  }
}

void Worker::CloseWithDisconnect(Conn& c, uint32_t slot, std::string_view reason, bool reconnect,
                                 uint16_t code, std::string_view close_reason) {
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  if (!reconnect && c.session) c.session->restorable = false;
  EnqueueText(c, slot, protocol::EncodeDisconnect(reason, reconnect));
  CloseWithFrame(c, slot, code, close_reason);
}

std::unique_ptr<Session> Worker::NewSession(const Conn& c, const http::Request& req, int peer_fd) {
  auto session = std::make_unique<Session>();
  auto request_id = req.Get("x-request-id");
  session->restorable = !(request_id && !request_id->empty());
  session->sid = session->restorable ? NewSid() : std::string(*request_id);
  session->url = http::RequestUrl(req, c.tls != nullptr);
  for (const std::string& name : cfg_.headers) {
    auto value = req.Get(name);
    if (!value) continue;
    std::string v(*value);
    if (name == "cookie" && !cfg_.proxy_cookies.empty())
      v = http::FilterCookies(v, cfg_.proxy_cookies);
    if (!v.empty()) session->headers.emplace_back(name, std::move(v));
  }
  session->headers.emplace_back("REMOTE_ADDR", PeerAddress(peer_fd));
  return session;
}

void Worker::StartSession(Conn& c, uint32_t slot, const std::optional<std::string>& jwt,
                          const std::string& restore_sid) {
  c.state = ConnState::kConnecting;
  if (!restore_sid.empty() && shared_.remote_broker) {
    // --broker redis|nats: the restore answer comes later (OnRemoteSessionReply); the JWT is kept
    // for the fallback to local auth or the Connect RPC.
    restore_jwt_[ConnToken(c, slot)] = jwt;
    TryRestoreSession(c, slot, restore_sid);
    return;
  }
  if ((!restore_sid.empty() && TryRestoreSession(c, slot, restore_sid)) ||
      AuthenticateLocally(c, slot, jwt)) {
    // Commands that came with the request (SSE, long polling) run now; a WebSocket's early
    // frames are fed by its caller.
    if (c.state == ConnState::kOpen && c.transport != Transport::kWs) DrainPending(c, slot);
    return;
  }
  StartConnectRpc(c, slot);
}

void Worker::StartConnectRpc(Conn& c, uint32_t slot) {
  auto call = std::make_shared<rpc::Call>();
  call->kind = rpc::CallKind::kConnect;
  call->sid = c.session->sid;
  call->owner = ConnToken(c, slot);
  anycable::Env* env = call->connect_request.mutable_env();
  env->set_url(c.session->url);
  for (auto& [k, v] : c.session->headers) (*env->mutable_headers())[k] = v;
  c.session->inflight = call;
  ++outstanding_calls_;
  SubmitRpc(call);
}

void Worker::OnCommandsDrained(Conn& c, uint32_t slot) {
  if (c.transport == Transport::kSse && c.hold_output && c.http) {
    const Session& s = *c.session;
    for (const std::string& id : c.http->sse_identifiers) {
      if (!s.Find(id)) {
        LOG_DEBUG("sid=%s SSE subscription to %s not confirmed", s.sid.c_str(), id.c_str());
        CloseWithFrame(c, slot, ws::close_code::kNormal, "Subscription Rejected");
        return;
      }
    }
    SseStart(c, slot);
  } else if (PollState* ps = c.poll_state(); ps && ps->initial && ps->has_waiter) {
    PollAnswer(c, slot, 200);  // the first response: welcome and confirmations
  }
}

void Worker::AppendCorsHeaders(const http::Request& req,
                               std::vector<std::pair<std::string, std::string>>* headers) const {
  if (cfg_.allowed_origins.empty()) {
    headers->emplace_back("Access-Control-Allow-Origin", "*");
  } else if (auto origin = req.Get("origin");
             origin && http::OriginAllowed(origin, cfg_.allowed_origins)) {
    std::string o(*origin);
    for (char& ch : o) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    headers->emplace_back("Access-Control-Allow-Origin", std::move(o));
  }
  headers->emplace_back("Access-Control-Allow-Methods", "POST, OPTIONS");
  headers->emplace_back("Access-Control-Allow-Credentials", "true");
  headers->emplace_back("Access-Control-Allow-Headers",
                        "Origin, X-Requested-With, X-Request-ID, Content-Type, Accept, "
                        "X-CSRF-Token, Authorization, X-AnyCable-Poll-ID");
  headers->emplace_back("Access-Control-Expose-Headers", "X-AnyCable-Poll-ID");
}

}  // namespace cable::server
