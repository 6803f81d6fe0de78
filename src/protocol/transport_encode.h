// Server→client framing for the HTTP transports (pure functions, any thread): Server-Sent Events
// (anycable-go's sse/encoder.go) and JSON lines for long polling. The session layer speaks Action
// Cable JSON replies; these turn one reply into the bytes a transport writes.
//
// SSE (spec Appendix D): an event is `event: <type>` (typed replies only), one `data: ` line per
// line of the payload, `id: <offset>/<epoch>/<stream>` when the reply has a position, and
// `retry: 31536000000` on a disconnect with reconnect=false; a blank line ends it. A GET stream
// ("unwrapped") carries only the `message` of untyped replies (a JSON string message as its
// text); a POST stream carries whole replies. The SSE body is sent with chunked transfer coding,
// so every event is also one HTTP chunk: a shared broadcast frame is a complete chunk.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cable::protocol {

// What the HTTP transports need to know about one reply (a JSON object); `message` is the JSON
// text of the "message" member (minified).
struct ReplyFields {
  std::string type;
  std::string message;
  bool has_message = false;
  bool reconnect = true;  // "reconnect" of a disconnect reply
  std::string stream_id;
  std::string epoch;
  uint64_t offset = 0;
};
// false when `json` is not a JSON object (the caller then sends it as an untyped data payload).
bool ParseReplyFields(std::string_view json, ReplyFields* out);

// The text an SSE GET stream carries for a `message` JSON value: a JSON string is decoded, any
// other value is sent as its JSON text.
std::string SseMessageText(std::string_view message_json);

// One SSE event (no chunk framing), ending with the blank line. `data` may span lines.
void AppendSseEvent(std::string& out, std::string_view event, std::string_view data,
                    std::string_view id, bool no_reconnect);
// "<offset>/<epoch>/<stream>", or empty without a position.
std::string SseEventId(uint64_t offset, std::string_view epoch, std::string_view stream);

// One HTTP/1.1 chunk: "<hex size>\r\n" body "\r\n".
std::string HttpChunk(std::string_view body);
// The last chunk of a chunked body.
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// A reply as one SSE chunk for a stream (`unwrap`: GET; `raw`: typed replies are dropped, an
// empty string is returned).
std::string EncodeSseReply(std::string_view reply_json, bool unwrap, bool raw);

// The non-empty lines of a JSONL body (LF or CRLF separated), as views into it.
std::vector<std::string_view> SplitJsonLines(std::string_view body);

// One JSON line: the reply with raw line breaks (only possible as JSON whitespace) turned into
// spaces, and '\n'.
std::string JsonLine(std::string_view reply_json);

}  // namespace cable::protocol
