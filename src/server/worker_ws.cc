// Worker: the WebSocket transport — the upgrade, inbound frames (ws::FrameReader callbacks push
// client messages into the session) and outbound text frames (replies, permessage-deflate).
// Broadcast frames come ready-made from hub::Message (Wire::kWs / kWsExt), pings from the tick.
#include <cstring>

#include "common/log.h"
#include "server/worker.h"
#include "ws/deflate.h"
#include "ws/frame.h"

namespace cable::server {

// ---- FrameReader callbacks (cur_conn_ is the connection being fed) ----

void Worker::OnText(std::string_view message) { OnClientMessage(message); }
void Worker::OnBinary(std::string_view message) { OnClientMessage(message); }

void Worker::OnControlBytes(std::string_view bytes) {
  if (cur_conn_) EnqueueRaw(*cur_conn_, cur_slot_, bytes);
}

void Worker::OnClose(uint16_t, std::string_view) {
  // wslay already queued our close reply through OnControlBytes; flush it, then close.
  if (cur_conn_) BeginClosing(*cur_conn_, cur_slot_);
}

void Worker::OnProtocolError(uint16_t) {
  if (cur_conn_) BeginClosing(*cur_conn_, cur_slot_);
}

void Worker::WsEnqueueText(Conn& c, uint32_t slot, std::string_view payload) {
  if (c.deflate) {
    EnqueueRaw(c, slot, ws::BuildDeflatedFrame(ws::Opcode::kText, payload));
    return;
  }
  uint8_t header[ws::kMaxHeaderSize];
  size_t hlen = ws::WriteFrameHeader(header, ws::Opcode::kText, payload.size());
  hub::Frame* f = hub::Frame::NewLocal(hlen + payload.size());
  std::memcpy(f->data(), header, hlen);
  std::memcpy(f->data() + hlen, payload.data(), payload.size());
  Enqueue(c, slot, f);
  f->ReleaseCreator();
}

void Worker::ApplyPingParams(Conn& c, const http::Request& req) {
  // Per-connection ping settings: ?pi=<seconds> (0 disables), ?ptp=s|ms|ns.
  int64_t interval_ms = shared_.ping_interval_ms;
  if (auto pi = http::QueryParam(req.query, "pi")) {
    char* end = nullptr;
    long v = std::strtol(pi->c_str(), &end, 10);
    if (end != pi->c_str() && *end == 0 && v >= 0) interval_ms = v * 1000;
  }
  c.ping_period = static_cast<uint32_t>((interval_ms + kTickMs - 1) / kTickMs);
  c.ping_precision = static_cast<uint8_t>(cfg_.ping_timestamp_precision);
  if (auto ptp = http::QueryParam(req.query, "ptp")) {
    if (*ptp == "s") c.ping_precision = 0;
    if (*ptp == "ms") c.ping_precision = 1;
    if (*ptp == "ns") c.ping_precision = 2;
  }
}

void Worker::HandleUpgrade(Conn& c, uint32_t slot, const http::Request& req) {
  if (!http::OriginAllowed(req.Get("origin"), cfg_.allowed_origins)) {
    Respond(c, slot, 403, "Origin not allowed", true);
    PauseReading(c, slot);
    return;
  }
  http::UpgradeRequest up;
  http::UpgradeError uerr = http::CheckUpgrade(req, &up);
  if (uerr != http::UpgradeError::kNone) {
    int status = http::UpgradeErrorStatus(uerr);
    std::vector<std::pair<std::string, std::string>> extra;
    // As gorilla/websocket: every refused upgrade names the version we speak.
    extra.emplace_back("Sec-WebSocket-Version", "13");
    c.keep_alive = false;
    EnqueueRaw(c, slot,
               http::BuildResponse(status, http::StatusText(status), "text/plain; charset=utf-8",
                                   extra, true));
    PauseReading(c, slot);
    return;
  }
  if (stopping_) {
    Respond(c, slot, 503, "Service Unavailable", true);
    PauseReading(c, slot);
    return;
  }
  // Server preference order, as anycable-go: v1-json wins when a client offers both.
  auto protocol =
      http::SelectSubprotocol(up.protocols, {"actioncable-v1-json", "actioncable-v1-ext-json"});
  // --enable_ws_compression: accept a permessage-deflate offer, always without context takeover
  // (gorilla's answer), so frames are compressed per message and broadcasts once for everyone.
  c.deflate = cfg_.enable_ws_compression && http::OffersPermessageDeflate(req);
  if (c.deflate) c.reader.set_deflate(true);
  EnqueueRaw(c, slot,
             http::BuildUpgradeResponse(http::ComputeAcceptKey(up.key), protocol, shared_.version,
                                        c.deflate ? ws::kPermessageDeflateResponse : ""));

  auto session = NewSession(c, req, c.fd);
  session->ext = protocol && *protocol == "actioncable-v1-ext-json";
  c.wire = session->ext ? hub::Wire::kWsExt : hub::Wire::kWs;
  ApplyPingParams(c, req);

  // Before c.http goes: req's views point into its buffer.
  const std::optional<std::string> jwt = ExtractJwt(cfg_, req, up);
  // Session restore (ext protocol with a broker): the previous sid in X-AnyCable-Restore-Sid, or
  // ?sid=.
  std::string restore_sid;
  if (session->ext && (shared_.broker || shared_.remote_broker) && cfg_.sessions_ttl_s > 0) {
    if (auto h = req.Get("x-anycable-restore-sid"); h && !h->empty()) {
      restore_sid.assign(*h);
    } else if (auto q = http::QueryParam(req.query, "sid"); q && !q->empty()) {
      restore_sid = *q;
    }
  }
  std::string leftover = c.http->buf.substr(req.head_size);
  c.http.reset();
  c.session = std::move(session);
  StartSession(c, slot, jwt, restore_sid);
  // Frames sent before the welcome wait for it, or are processed at once when the session opened
  // here; they are dropped if it was refused (spec §5 item 1).
  if (!leftover.empty() && c.state != ConnState::kClosing) {
    OnBytes(c, slot, leftover.data(), leftover.size());
  }
}

}  // namespace cable::server
