// Internal helpers shared by the protocol decoders and encoders: a reusable padded copy buffer
// for simdjson, Go-compatible UTF-8 repair, JSON whitespace trimming and Go-style key matching.
// Not part of the module's public API (use command.h, encode.h, broadcast.h). Free functions are
// callable from any thread; a PaddedBuffer belongs to one decoder and is not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <simdjson.h>

namespace cable::protocol::internal {

// Go's encoding/json rejects documents nested deeper than this; simdjson is configured to match.
inline constexpr size_t kMaxJsonDepth = 10000;

// Owned copy of an input followed by simdjson's required zero padding, so the parser never reads
// past the caller's buffer. Grows geometrically and is reused between calls.
class PaddedBuffer {
 public:
  // Returns a view of the copy; valid until the next Assign().
  std::string_view Assign(std::string_view s);

 private:
  std::unique_ptr<char[]> buf_;
  size_t capacity_ = 0;
};

// Length (1..4) of the valid UTF-8 sequence at p[0..n) and its code point, or 0 if the bytes there
// are not valid UTF-8 (overlong, surrogate, > U+10FFFF, truncated): the same rules as Go's
// utf8.DecodeRune.
size_t DecodeUtf8(const unsigned char* p, size_t n, uint32_t* cp);

// Go's JSON decoder turns every byte that starts an invalid UTF-8 sequence into U+FFFD instead of
// failing. simdjson rejects such input, so callers retry on a repaired copy. Writes the repaired
// text to `out` and returns true if anything was replaced; returns false (out untouched) otherwise.
bool RepairUtf8(std::string_view s, std::string& out);

// Go matches object keys to struct fields exactly or case-insensitively (ASCII folding here; Go
// also folds U+212A KELVIN SIGN and U+017F LONG S, which we ignore).
bool KeyMatches(std::string_view key, std::string_view field);

// Fully validating parse of `input` (copied into `scratch`). On a UTF-8 error it retries once on a
// repaired copy (kept in `repaired`), since Go accepts invalid UTF-8 inside strings. On success
// `*parsed` is the padded text the DOM refers to (valid until the next call with the same buffers).
simdjson::error_code ParseDom(simdjson::dom::parser& parser, PaddedBuffer& scratch,
                              std::string& repaired, std::string_view input,
                              simdjson::dom::element* root, std::string_view* parsed);

// Raw JSON text of an on-demand value (objects/arrays whole, scalars without trailing blanks).
simdjson::error_code RawJson(simdjson::ondemand::value value, std::string_view* out);

// Strips JSON insignificant whitespace (space, \t, \n, \r) from both ends.
std::string_view TrimJsonWhitespace(std::string_view s);

}  // namespace cable::protocol::internal
