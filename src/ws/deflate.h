// permessage-deflate (RFC 7692) for --enable_ws_compression, negotiated as gorilla/websocket (and
// so anycable-go) does: "server_no_context_takeover; client_no_context_takeover". Without context
// takeover every message is compressed and decompressed on its own, so one compressed frame fits
// every subscriber of a broadcast, and the codecs keep no state between messages.
//
// Threads / memory: the zlib streams are per thread (thread_local, created on first use, reset
// before every message, freed at thread exit): a worker, or any thread that builds a shared
// broadcast frame, pays ~300 KiB of zlib state once; connections pay nothing. Every function is
// synchronous and may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ws/frame.h"

namespace cable::ws {

// The Sec-WebSocket-Extensions value we answer with.
inline constexpr std::string_view kPermessageDeflateResponse =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

// Compresses one message payload: raw deflate, sync flush, the trailing 00 00 ff ff removed
// (RFC 7692 §7.2.1). Appends to *out.
void DeflateMessage(std::string_view payload, std::string* out);

// A complete FIN frame: RSV1 set and the deflated payload when that is smaller than `payload`,
// otherwise the plain frame (RFC 7692 allows uncompressed messages on a compressing connection).
std::string BuildDeflatedFrame(Opcode op, std::string_view payload);

enum class InflateResult { kOk, kTooBig, kCorrupt };
// Decompresses one message (the 00 00 ff ff tail is added here, §7.2.2) into *out (replaced).
// Stops as soon as the output would exceed max_size (0 = unlimited), so a compression bomb costs
// at most max_size bytes: kTooBig. kCorrupt for data that is not valid raw deflate.
InflateResult InflateMessage(std::string_view compressed, size_t max_size, std::string* out);

}  // namespace cable::ws
