#include "ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cctype>
#include <cstring>

#include "ws/deflate.h"

namespace cable::load {
namespace {

constexpr size_t kMaxUpgradeHead = 16384;

bool IsControl(uint8_t opcode) { return opcode >= 8; }

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

const char* FrameErrorName(FrameError e) {
  switch (e) {
    case FrameError::kReservedBits:
      return "reserved bits set";
    case FrameError::kBadOpcode:
      return "unknown opcode";
    case FrameError::kFragmentedControl:
      return "fragmented control frame";
    case FrameError::kControlTooLong:
      return "control frame longer than 125 bytes";
    case FrameError::kUnexpectedContinuation:
      return "continuation without a message";
    case FrameError::kExpectedContinuation:
      return "new message inside a fragmented one";
    case FrameError::kTooLarge:
      return "message too large";
    case FrameError::kCorrupt:
      return "compressed message does not inflate";
  }
  return "?";
}

const char* UpgradeErrorName(UpgradeError e) {
  switch (e) {
    case UpgradeError::kNotHttp:
      return "not an HTTP response";
    case UpgradeError::kStatus:
      return "upgrade refused";
    case UpgradeError::kNoUpgrade:
      return "no Upgrade: websocket header";
    case UpgradeError::kBadAccept:
      return "wrong Sec-WebSocket-Accept";
    case UpgradeError::kTooLong:
      return "response head too long";
  }
  return "?";
}

void FrameReader::Feed(std::string_view data) {
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
    // A burst can grow one connection's buffer a lot; give it back once drained.
    if (buf_.empty() && buf_.capacity() > 65536) std::string().swap(buf_);
  }
  buf_.append(data);
}

Result<bool, FrameError> FrameReader::Next(WsMessage* msg) {
  for (;;) {
    size_t avail = buf_.size() - pos_;
    if (avail < 2) return false;
    const auto* p = reinterpret_cast<const uint8_t*>(buf_.data() + pos_);
    bool fin = p[0] & 0x80;
    uint8_t opcode = p[0] & 0x0f;
    bool rsv1 = (p[0] & 0x40) != 0;
    if ((p[0] & 0x30) || (rsv1 && (!deflate_ || opcode == 0 || IsControl(opcode)))) {
      return MakeError(FrameError::kReservedBits);
    }
    if ((opcode > 2 && opcode < 8) || opcode > 10) return MakeError(FrameError::kBadOpcode);
    bool masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t header = 2;
    if (IsControl(opcode)) {
      if (!fin) return MakeError(FrameError::kFragmentedControl);
      if (len > 125) return MakeError(FrameError::kControlTooLong);
    }
    if (len == 126) {
      if (avail < 4) return false;
      len = (uint64_t{p[2]} << 8) | p[3];
      header = 4;
    } else if (len == 127) {
      if (avail < 10) return false;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      header = 10;
    }
    if (len > max_message_) return MakeError(FrameError::kTooLarge);
    size_t mask_at = header;
    if (masked) header += 4;
    if (avail < header + len) return false;

    char* payload = buf_.data() + pos_ + header;
    if (masked) {
      const char* key = buf_.data() + pos_ + mask_at;
      for (size_t i = 0; i < len; ++i) payload[i] ^= key[i & 3];
    }
    pos_ += header + static_cast<size_t>(len);
    std::string_view body(payload, static_cast<size_t>(len));

    if (IsControl(opcode)) {
      msg->opcode = static_cast<Opcode>(opcode);
      msg->payload = body;
      return true;
    }
    if (opcode == 0) {
      if (!in_fragment_) return MakeError(FrameError::kUnexpectedContinuation);
      if (fragments_.size() + body.size() > max_message_) return MakeError(FrameError::kTooLarge);
      fragments_.append(body);
      if (!fin) continue;
      in_fragment_ = false;
      if (fragment_compressed_) {
        auto r = Yield(msg, fragment_opcode_, fragments_, true);
        fragments_.clear();
        return r;
      }
      // Moved out so the view stays valid until the next call while fragments_ is reused later.
      buf_.replace(0, pos_, fragments_);
      pos_ = fragments_.size();
      msg->opcode = fragment_opcode_;
      msg->payload = std::string_view(buf_.data(), fragments_.size());
      fragments_.clear();
      return true;
    }
    if (in_fragment_) return MakeError(FrameError::kExpectedContinuation);
    if (!fin) {
      in_fragment_ = true;
      fragment_opcode_ = static_cast<Opcode>(opcode);
      fragment_compressed_ = rsv1;
      fragments_.assign(body);
      continue;
    }
    return Yield(msg, static_cast<Opcode>(opcode), body, rsv1);
  }
}

Result<bool, FrameError> FrameReader::Yield(WsMessage* msg, Opcode opcode, std::string_view body,
                                            bool compressed) {
  msg->opcode = opcode;
  if (!compressed) {
    msg->payload = body;
    return true;
  }
  ++compressed_messages_;
  switch (ws::InflateMessage(body, max_message_, &inflated_)) {
    case ws::InflateResult::kOk:
      break;
    case ws::InflateResult::kTooBig:
      return MakeError(FrameError::kTooLarge);
    case ws::InflateResult::kCorrupt:
      return MakeError(FrameError::kCorrupt);
  }
  msg->payload = inflated_;
  return true;
}

void AppendClientFrame(std::string* out, Opcode opcode, std::string_view payload,
                       uint32_t mask_key) {
  out->push_back(static_cast<char>(0x80 | static_cast<uint8_t>(opcode)));
  size_t len = payload.size();
  if (len < 126) {
    out->push_back(static_cast<char>(0x80 | len));
  } else if (len <= 0xffff) {
    out->push_back(static_cast<char>(0x80 | 126));
    out->push_back(static_cast<char>(len >> 8));
    out->push_back(static_cast<char>(len & 0xff));
  } else {
    out->push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i)
      out->push_back(static_cast<char>((uint64_t{len} >> (8 * i)) & 0xff));
  }
  char key[4];
  std::memcpy(key, &mask_key, 4);
  out->append(key, 4);
  size_t at = out->size();
  out->append(payload);
  for (size_t i = 0; i < len; ++i) (*out)[at + i] ^= key[i & 3];
}

std::string WebSocketAccept(std::string_view key) {
  std::string in(key);
  in += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char b64[32];
  int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(b64), static_cast<size_t>(n));
}

std::string UpgradeRequest(std::string_view host_port, std::string_view path_and_query,
                           std::string_view key, bool deflate, bool ext) {
  std::string r;
  r.reserve(256);
  r += "GET ";
  r += path_and_query;
  r += " HTTP/1.1\r\nHost: ";
  r += host_port;
  r += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
  r += key;
  r += "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ";
  r += ext ? "actioncable-v1-ext-json\r\n" : "actioncable-v1-json\r\n";
  if (deflate) r += "Sec-WebSocket-Extensions: permessage-deflate\r\n";
  r += "\r\n";
  return r;
}

Result<size_t, UpgradeError> ParseUpgradeResponse(std::string_view data,
                                                  std::string_view expected_accept, int* status) {
  size_t line_end = data.find("\r\n");
  if (line_end == std::string_view::npos) {
    if (data.size() > kMaxUpgradeHead) return MakeError(UpgradeError::kTooLong);
    return size_t{0};
  }
  std::string_view line = data.substr(0, line_end);
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ' ||
      !std::isdigit(static_cast<unsigned char>(line[9])) ||
      !std::isdigit(static_cast<unsigned char>(line[10])) ||
      !std::isdigit(static_cast<unsigned char>(line[11]))) {
    return MakeError(UpgradeError::kNotHttp);
  }
  *status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (*status != 101) return MakeError(UpgradeError::kStatus);
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() > kMaxUpgradeHead) return MakeError(UpgradeError::kTooLong);
    return size_t{0};
  }
  bool upgrade = false;
  bool accept_ok = false;
  size_t at = line_end + 2;
  while (at < end) {
    size_t eol = data.find("\r\n", at);
    std::string_view h = data.substr(at, eol - at);
    at = eol + 2;
    size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = Trim(h.substr(0, colon));
    std::string_view value = Trim(h.substr(colon + 1));
    if (EqualsNoCase(name, "upgrade") && EqualsNoCase(value, "websocket")) upgrade = true;
    if (EqualsNoCase(name, "sec-websocket-accept") && value == expected_accept) accept_ok = true;
  }
  if (!upgrade) return MakeError(UpgradeError::kNoUpgrade);
  if (!accept_ok) return MakeError(UpgradeError::kBadAccept);
  return end + 4;
}

}  // namespace cable::load
