#include "ws/frame.h"

namespace cable::ws {

size_t WriteFrameHeader(uint8_t* out, Opcode op, size_t payload_len) {
  out[0] = static_cast<uint8_t>(0x80u | static_cast<uint8_t>(op));
  if (payload_len < 126) {
    out[1] = static_cast<uint8_t>(payload_len);
    return 2;
  }
  if (payload_len <= 0xffff) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(payload_len >> 8);
    out[3] = static_cast<uint8_t>(payload_len);
    return 4;
  }
  out[1] = 127;
  uint64_t len = payload_len;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<uint8_t>(len >> (56 - 8 * i));
  return 10;
}

std::string BuildFrame(Opcode op, std::string_view payload) {
  uint8_t header[kMaxHeaderSize];
  size_t n = WriteFrameHeader(header, op, payload.size());
  std::string frame;
  frame.reserve(n + payload.size());
  frame.append(reinterpret_cast<const char*>(header), n);
  frame.append(payload);
  return frame;
}

std::string BuildCloseFrame(uint16_t code, std::string_view reason) {
  constexpr size_t kMaxReason = kMaxControlPayload - 2;
  if (reason.size() > kMaxReason) {
    size_t cut = kMaxReason;
    // Back off over continuation bytes (10xxxxxx) so the cut lands on a code point boundary.
    while (cut > 0 && (static_cast<uint8_t>(reason[cut]) & 0xc0u) == 0x80u) --cut;
    reason = reason.substr(0, cut);
  }
  std::string payload;
  payload.reserve(2 + reason.size());
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xff));
  payload.append(reason);
  return BuildFrame(Opcode::kClose, payload);
}

}  // namespace cable::ws
