// Outbound WebSocket framing (RFC 6455 §5.2) for server-to-client frames. Server frames are never
// masked, so one encoded frame is byte-identical for every socket and can be built once and shared
// by all subscribers of a broadcast. Pure functions: any thread may call them; results are owned
// by the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cable::ws {

enum class Opcode : uint8_t {
  kContinuation = 0,
  kText = 1,
  kBinary = 2,
  kClose = 8,
  kPing = 9,
  kPong = 10
};

namespace close_code {
constexpr uint16_t kNormal = 1000, kGoingAway = 1001, kProtocolError = 1002, kUnsupported = 1003,
                   kNoStatus = 1005, kAbnormal = 1006, kInvalidPayload = 1007, kPolicy = 1008,
                   kTooBig = 1009, kInternalError = 1011;
}  // namespace close_code

// Largest server frame header: 2 bytes + 8-byte extended length (no mask key).
constexpr size_t kMaxHeaderSize = 10;
// Control frames carry at most 125 payload bytes (RFC 6455 §5.5).
constexpr size_t kMaxControlPayload = 125;

// Writes a FIN, unmasked header for a payload of payload_len bytes into out (at least
// kMaxHeaderSize bytes). Returns the header size: 2, 4 or 10.
size_t WriteFrameHeader(uint8_t* out, Opcode op, size_t payload_len);

// Header + payload in one string.
std::string BuildFrame(Opcode op, std::string_view payload);

// Close frame with a status code and a reason truncated to fit the 125-byte control payload (the
// cut never splits a UTF-8 sequence, so the reason stays valid UTF-8 if it was).
std::string BuildCloseFrame(uint16_t code, std::string_view reason);

}  // namespace cable::ws
