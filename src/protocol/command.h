// Action Cable client command decoding ("actioncable-v1-json" / "-ext-json" text frames).
// A CommandDecoder belongs to one worker thread (it owns simdjson parsers and scratch memory and
// is not thread-safe); the returned ClientCommand owns copies of everything it holds.
//
// Semantics follow anycable-go's json.Unmarshal into common.Message: keys match case-insensitively,
// a repeated key overwrites the earlier one, `null` leaves a string field unset, unknown keys are
// ignored, invalid UTF-8 inside strings becomes U+FFFD. Known differences: numbers outside the
// int64/uint64/double range and lone \uD800-style surrogate escapes are rejected (Go accepts them),
// and the types inside "history"/"presence" are not checked here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace cable::protocol {

enum class CommandType : uint8_t {
  kSubscribe,
  kUnsubscribe,
  kMessage,
  kPing,
  kPong,
  kWhisper,
  kHistory,
  kJoin,
  kLeave,
  kPresence,
  kUnknown,  // any other "command" value (including ""); Go logs and ignores it
};

struct ClientCommand {
  CommandType type = CommandType::kUnknown;
  std::string name;  // the raw "command" value
  std::string
      identifier;  // decoded "identifier" string, opaque: compare byte-exactly, never normalize
  // kMessage: the decoded data string. Every other command: the raw JSON text of "data" (e.g. an
  // object for whisper, "\"x\"" for a string). Empty when absent or null.
  std::string data;
  bool has_data = false;
  // Raw JSON text of the ext-protocol "history" / "presence" members; empty when absent or null.
  std::string history;
  std::string presence;
};

// What to do on error (mirrors anycable-go): kMalformedJson, kNotAnObject and kBadField are
// json.Unmarshal failures, after which Go stops reading the socket; kMissingCommand is Go's
// "unknown command" (ignored); kDataNotString is a "message" without a string "data" (no reply,
// connection keeps going).
enum class DecodeError : uint8_t {
  kMalformedJson,   // not valid JSON (syntax, truncation, trailing garbage, empty, depth > 10000)
  kNotAnObject,     // valid JSON but the top level is not an object
  kMissingCommand,  // no string "command" member
  kBadField,        // "command" or "identifier" present but neither a string nor null
  kDataNotString,   // command "message" whose "data" is absent, null or not a JSON string
};

// The ext-protocol "history" member (Go's common.HistoryRequest):
// {"since":<unix seconds>,"streams":{"<stream>":{"epoch":"<e>","offset":<n>}}}.
struct HistoryPosition {
  std::string epoch;
  uint64_t offset = 0;
};
struct HistoryRequest {
  int64_t since = 0;
  bool has_streams = false;  // "streams" present and not null (Go: a non-nil map)
  std::vector<std::pair<std::string, HistoryPosition>> streams;
  const HistoryPosition* Find(std::string_view stream) const {
    for (const auto& [name, pos] : streams) {
      if (name == stream) return &pos;
    }
    return nullptr;
  }
  // Go's node.History ignores a request with neither (logged, no reply).
  bool empty() const { return since == 0 && !has_streams; }
};
// Parses the raw JSON text of ClientCommand::history with Go's json.Unmarshal rules (keys match
// case-insensitively, null leaves a field unset, unknown keys ignored). False when Go could not
// unmarshal it (not an object, "since" not an int64, "offset" not a uint64, "epoch" not a string,
// "streams" or a position not an object). Any thread.
bool ParseHistoryRequest(std::string_view raw, HistoryRequest* out);

// The ext-protocol "presence" member: {"id":"<presence id>","info":<any JSON>}. False when it is
// not an object, or "id" is not a string (an absent/null id gives an empty id). `info_json` gets
// the minified JSON of "info" (empty when absent or null). Any thread.
bool ParsePresenceRequest(std::string_view raw, std::string* id, std::string* info_json);

const char* DecodeErrorName(DecodeError e);
CommandType CommandTypeFromName(std::string_view name);

class CommandDecoder {
 public:
  CommandDecoder();
  ~CommandDecoder();
  CommandDecoder(const CommandDecoder&) = delete;
  CommandDecoder& operator=(const CommandDecoder&) = delete;

  // `frame` is only read during the call (it is copied into padded storage first).
  cable::Result<ClientCommand, DecodeError> Decode(std::string_view frame);

 private:
  struct Impl;  // keeps simdjson out of every includer
  std::unique_ptr<Impl> impl_;
};

}  // namespace cable::protocol
