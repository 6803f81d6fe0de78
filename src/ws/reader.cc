#include "ws/reader.h"

#include <wslay/wslay.h>

#include "ws/deflate.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace cable::ws {
namespace {

bool IsControl(uint8_t opcode) { return (opcode & 0x8u) != 0; }

size_t ExtLenBytes(uint8_t hdr1) {
  uint8_t len7 = hdr1 & 0x7fu;
  return len7 == 126 ? 2 : (len7 == 127 ? 8 : 0);
}

// Close codes a peer may send: gorilla/websocket v1.5.3 isValidReceivedCloseCode.
bool IsValidReceivedCloseCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  switch (code) {
    case 1000:
    case 1001:
    case 1002:
    case 1003:
    case 1007:
    case 1008:
    case 1009:
    case 1010:
    case 1011:
    case 1012:
    case 1013:
      return true;
    default:
      return false;
  }
}

// Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const uint8_t* end = p + s.size();
  while (p < end) {
    uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (size_t i = 2; i <= n; ++i) {
      if ((p[i] & 0xc0u) != 0x80u) return false;
    }
    p += n + 1;
  }
  return true;
}

}  // namespace

// Heap part of the reader; exists only while a frame or message is in flight. Its address is
// wslay's user_data, so it stays put when the FrameReader is moved.
struct FrameReader::State {
  wslay_event_context_ptr ctx = nullptr;
  // Input of the current PumpWslay call, handed to wslay through RecvCallback.
  const uint8_t* in = nullptr;
  size_t in_len = 0;
  FrameReader::Handler* handler = nullptr;
  std::string out;          // control frames wslay produced during one pump
  std::string close_frame;  // raw bytes of the peer's close frame while it arrives
  bool closing = false;
  size_t max_message_size = 0;
  // A compressed message failed (1009 too big once inflated, 1007 corrupt or bad UTF-8): wslay is
  // stopped at once (no more input, no more messages delivered) and Feed closes with this code.
  uint16_t fail_code = 0;

  ~State() {
    if (ctx) wslay_event_context_free(ctx);
  }

  static ssize_t RecvCallback(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int /*flags*/,
                              void* user_data) {
    auto* s = static_cast<State*>(user_data);
    if (s->in_len == 0 || s->fail_code != 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    size_t n = std::min(len, s->in_len);
    std::memcpy(buf, s->in, n);
    s->in += n;
    s->in_len -= n;
    return static_cast<ssize_t>(n);
  }

  static ssize_t SendCallback(wslay_event_context_ptr /*ctx*/, const uint8_t* data, size_t len,
                              int /*flags*/, void* user_data) {
    static_cast<State*>(user_data)->out.append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }

  static void OnMsgRecv(wslay_event_context_ptr /*ctx*/, const wslay_event_on_msg_recv_arg* arg,
                        void* user_data) {
    auto* s = static_cast<State*>(user_data);
    if (s->fail_code != 0) return;
    std::string_view msg;
    if (arg->msg_length > 0) msg = {reinterpret_cast<const char*>(arg->msg), arg->msg_length};
    if ((arg->rsv & WSLAY_RSV1_BIT) != 0) {
      // permessage-deflate (only negotiated connections get here: Scan rejects RSV1 otherwise).
      // The inflated text lives in a per-thread buffer: messages are handled synchronously.
      thread_local std::string inflated;
      switch (InflateMessage(msg, s->max_message_size, &inflated)) {
        case InflateResult::kOk:
          break;
        case InflateResult::kTooBig:
          s->fail_code = close_code::kTooBig;  // as an oversized plain message
          return;
        case InflateResult::kCorrupt:
          s->fail_code = close_code::kInvalidPayload;
          return;
      }
      if (arg->opcode == WSLAY_TEXT_FRAME && !IsValidUtf8(inflated)) {
        s->fail_code = close_code::kInvalidPayload;
        return;
      }
      msg = inflated;
    }
    switch (arg->opcode) {
      case WSLAY_TEXT_FRAME:
        s->handler->OnText(msg);
        break;
      case WSLAY_BINARY_FRAME:
        s->handler->OnBinary(msg);
        break;
      case WSLAY_PING:
        s->handler->OnPing(msg);
        break;
      case WSLAY_PONG:
        s->handler->OnPong(msg);
        break;
      default:
        break;  // close frames never reach wslay (see CollectClose)
    }
  }
};

void FrameReader::StateDeleter::operator()(State* s) const { delete s; }

FrameReader::~FrameReader() = default;
FrameReader::FrameReader(FrameReader&& other) noexcept = default;
FrameReader& FrameReader::operator=(FrameReader&& other) noexcept = default;

bool FrameReader::AtBoundary() const {
  return hdr_got_ == 0 && remaining_ == 0 && (flags_ & kFragmentOpen) == 0;
}

FrameReader::Stop FrameReader::Scan(std::string_view bytes, size_t* stop_at) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t frame_start = 0;
  size_t i = 0;
  while (i < n) {
    if (hdr_got_ == 0 && remaining_ > 0) {  // inside a payload: skip it in bulk
      size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - i));
      remaining_ -= take;
      i += take;
      continue;
    }
    uint8_t b = data[i];
    if (hdr_got_ == 0) {
      frame_start = i;
      uint8_t opcode = b & 0x0fu;
      bool fin = (b & 0x80u) != 0;
      // RSV2/3 are never used; RSV1 only marks the first frame of a compressed data message, and
      // only with permessage-deflate negotiated.
      uint8_t rsv = b & 0x70u;
      bool ok = rsv == 0 || (rsv == 0x40u && (flags_ & kDeflate) != 0 &&
                             (opcode == static_cast<uint8_t>(Opcode::kText) ||
                              opcode == static_cast<uint8_t>(Opcode::kBinary)));
      switch (opcode) {
        case static_cast<uint8_t>(Opcode::kContinuation):
          ok = ok && (flags_ & kFragmentOpen) != 0;
          break;
        case static_cast<uint8_t>(Opcode::kText):
        case static_cast<uint8_t>(Opcode::kBinary):
          ok = ok && (flags_ & kFragmentOpen) == 0;
          break;
        case static_cast<uint8_t>(Opcode::kClose):
        case static_cast<uint8_t>(Opcode::kPing):
        case static_cast<uint8_t>(Opcode::kPong):
          ok = ok && fin;
          break;
        default:
          ok = false;  // reserved opcode
      }
      if (!ok) {
        *stop_at = frame_start;
        return Stop::kError;
      }
      if (opcode == static_cast<uint8_t>(Opcode::kClose)) {
        *stop_at = frame_start;
        return Stop::kClose;
      }
      hdr0_ = b;
      hdr_got_ = 1;
      ++i;
      continue;
    }
    if (hdr_got_ == 1) {
      uint8_t len7 = b & 0x7fu;
      if ((b & 0x80u) == 0 || (IsControl(hdr0_ & 0x0fu) && len7 > kMaxControlPayload)) {
        *stop_at = frame_start;  // client frames must be masked
        return Stop::kError;
      }
      hdr1_ = b;
      remaining_ = len7 < 126 ? len7 : 0;
    } else if (hdr_got_ < 2 + ExtLenBytes(hdr1_)) {
      remaining_ = (remaining_ << 8) | b;
      if (hdr_got_ + 1u == 2 + ExtLenBytes(hdr1_)) {
        // RFC 6455 §5.2: the minimal length encoding MUST be used and the MSB must be 0.
        bool bad = ExtLenBytes(hdr1_) == 2 ? remaining_ < 126
                                           : (remaining_ >> 63) != 0 || remaining_ <= 0xffff;
        if (bad) {
          *stop_at = frame_start;
          return Stop::kError;
        }
      }
    }
    ++hdr_got_;
    ++i;
    if (hdr_got_ == 2 + ExtLenBytes(hdr1_) + 4) {  // header complete (incl. the mask key)
      hdr_got_ = 0;
      uint8_t opcode = hdr0_ & 0x0fu;
      if (!IsControl(opcode)) {
        if (hdr0_ & 0x80u) {
          flags_ &= static_cast<uint8_t>(~kFragmentOpen);
        } else {
          flags_ |= kFragmentOpen;
        }
      }
    }
  }
  *stop_at = n;
  return Stop::kNone;
}

FrameReader::State& FrameReader::EnsureState() {
  if (!state_) state_.reset(new State());
  return *state_;
}

bool FrameReader::PumpWslay(std::string_view bytes, size_t max_message_size, Handler& handler) {
  State& s = EnsureState();
  if (!s.ctx) {
    static constexpr wslay_event_callbacks kCallbacks = {
        &State::RecvCallback, &State::SendCallback, nullptr, nullptr, nullptr, nullptr,
        &State::OnMsgRecv};
    if (wslay_event_context_server_init(&s.ctx, &kCallbacks, &s) != 0) {
      s.ctx = nullptr;
      Fail(close_code::kInternalError, handler);
      return false;
    }
    if (flags_ & kDeflate) wslay_event_config_set_allowed_rsv_bits(s.ctx, WSLAY_RSV1_BIT);
  }
  s.max_message_size = max_message_size;
  wslay_event_config_set_max_recv_msg_length(
      s.ctx, max_message_size ? max_message_size : (1ull << 31) - 1);
  s.in = reinterpret_cast<const uint8_t*>(bytes.data());
  s.in_len = bytes.size();
  s.handler = &handler;
  int rv = wslay_event_recv(s.ctx);
  if (s.fail_code != 0) {
    uint16_t code = s.fail_code;
    s.handler = nullptr;
    Fail(code, handler);
    return false;
  }
  if (rv != 0) {
    // Only allocation failure or a frame error the tracker should have caught gets here; wslay's
    // own close frame for the latter has no status code, so send ours instead.
    Fail(rv == WSLAY_ERR_NOMEM ? close_code::kInternalError : close_code::kProtocolError, handler);
    return false;
  }
  if (wslay_event_want_write(s.ctx)) wslay_event_send(s.ctx);
  s.handler = nullptr;
  s.in = nullptr;
  if (!wslay_event_get_read_enabled(s.ctx)) {
    // wslay queued and "sent" its close-with-error: 1007 or 1009 (1002 cases stop in Scan first).
    uint16_t code = wslay_event_get_status_code_sent(s.ctx);
    std::string out = std::move(s.out);
    Finish();
    handler.OnControlBytes(out);
    handler.OnProtocolError(code);
    return false;
  }
  if (!s.out.empty()) {
    std::string out = std::move(s.out);
    s.out.clear();
    handler.OnControlBytes(out);
  }
  return true;
}

void FrameReader::CollectClose(std::string_view bytes, Handler& handler) {
  std::string& frame = state_->close_frame;
  while (true) {
    size_t need = 2;
    if (frame.size() >= 2) {
      auto b1 = static_cast<uint8_t>(frame[1]);
      uint8_t len7 = b1 & 0x7fu;
      if ((b1 & 0x80u) == 0 || len7 > kMaxControlPayload)
        return Fail(close_code::kProtocolError, handler);
      need = 2 + 4 + len7;
    }
    size_t take = std::min(need - frame.size(), bytes.size());
    frame.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    if (frame.size() < need) return;  // wait for the rest
    if (need > 2) break;
  }
  std::string payload = frame.substr(6);
  for (size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<char>(payload[i] ^ frame[2 + i % 4]);

  uint16_t code = close_code::kNoStatus;
  std::string reason;
  if (payload.size() == 1) return Fail(close_code::kProtocolError, handler);
  if (payload.size() >= 2) {
    code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                 static_cast<uint8_t>(payload[1]));
    if (!IsValidReceivedCloseCode(code)) return Fail(close_code::kProtocolError, handler);
    reason = payload.substr(2);
    if (!IsValidUtf8(reason)) return Fail(close_code::kInvalidPayload, handler);
  }
  // Like gorilla's default close handler: echo the code (none if none was sent), no reason.
  std::string reply =
      code == close_code::kNoStatus ? BuildFrame(Opcode::kClose, {}) : BuildCloseFrame(code, {});
  Finish();
  handler.OnControlBytes(reply);
  handler.OnClose(code, reason);
}

void FrameReader::Fail(uint16_t code, Handler& handler) {
  std::string frame = BuildCloseFrame(code, {});
  Finish();
  handler.OnControlBytes(frame);
  handler.OnProtocolError(code);
}

void FrameReader::Finish() {
  state_.reset();
  remaining_ = 0;
  hdr_got_ = 0;
  flags_ = kFinished;
}

void FrameReader::set_deflate(bool on) {
  if (on) {
    flags_ |= kDeflate;
  } else {
    flags_ &= static_cast<uint8_t>(~kDeflate);
  }
}

void FrameReader::Feed(std::string_view bytes, size_t max_message_size, Handler& handler) {
  if (finished() || bytes.empty()) return;
  if (state_ && state_->closing) return CollectClose(bytes, handler);
  size_t stop_at = bytes.size();
  Stop stop = Scan(bytes, &stop_at);
  if (stop_at > 0 && !PumpWslay(bytes.substr(0, stop_at), max_message_size, handler)) return;
  switch (stop) {
    case Stop::kError:
      return Fail(close_code::kProtocolError, handler);
    case Stop::kClose:
      EnsureState().closing = true;
      return CollectClose(bytes.substr(stop_at), handler);
    case Stop::kNone:
      if (AtBoundary()) state_.reset();
      return;
  }
}

}  // namespace cable::ws
