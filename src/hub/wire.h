// hub::Wire — the byte encoding a subscriber's transport needs for a broadcast. A publication is
// serialized once per (identifier, wire) for the whole process (Message's frame cache), as
// anycable-go caches one encoding per encoder; every subscriber with that wire on every worker
// queues the same shared frame.
#pragma once

#include <cstdint>

namespace cable::hub {

enum class Wire : uint8_t {
  kWs,       // WebSocket text frame {"identifier","message"} (actioncable-v1-json)
  kWsExt,    // the same plus "stream_id","epoch","offset" (actioncable-v1-ext-json)
  kSse,      // SSE event in one HTTP chunk; data = the message only (GET), id = position
  kSseFull,  // SSE event in one HTTP chunk; data = the whole ext reply (POST), id = position
  kJsonl,    // one JSON line (long polling), the ext reply
};

// The wire of a history reply: positions always (a v1 WebSocket session gets the ext frame).
constexpr Wire Positioned(Wire w) { return w == Wire::kWs ? Wire::kWsExt : w; }
constexpr bool IsWebSocket(Wire w) { return w == Wire::kWs || w == Wire::kWsExt; }

}  // namespace cable::hub
