// Server-generated Action Cable frames ("actioncable-v1-json"), byte-exact with anycable-go's
// encoding/json output: key order as Go declares the struct fields, `omitempty` fields dropped
// when empty, strings escaped like Go's json.Marshal (HTML-safe). Free functions are pure and
// callable from any thread; a MessageEncoder belongs to one thread (it owns a parser).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cable::protocol {

// Appends `s` as a quoted JSON string the way Go's encoding/json does: \" \\ \b \f \n \r \t,
// other control bytes as \u00XX, '<' '>' '&' as \u003c \u003e \u0026, U+2028/U+2029 as
// \u2028/\u2029, and every byte of invalid UTF-8 as \ufffd. (\b and \f follow Go >= 1.22.)
void AppendJsonString(std::string& out, std::string_view s);
// Length AppendJsonString would add, quotes included.
size_t JsonStringSize(std::string_view s);

std::string EncodeWelcome(std::string_view sid);  // {"type":"welcome","sid":"..."}
std::string EncodePing(int64_t timestamp);        // {"type":"ping","message":1700000000}
std::string EncodePong();                         // {"type":"pong"}
// {"type":"disconnect","reason":"...","reconnect":true}; both keys always present.
std::string EncodeDisconnect(std::string_view reason, bool reconnect);
std::string EncodeConfirm(
    std::string_view identifier);  // {"type":"confirm_subscription","identifier":"..."}
std::string EncodeReject(
    std::string_view identifier);  // {"type":"reject_subscription","identifier":"..."}
// Extended protocol (actioncable-v1-ext-json): {"type":"confirm_history","identifier":"..."},
// {"type":"reject_history","identifier":"..."}, and the restored welcome
// {"type":"welcome","sid":"...","restored":true,"restored_ids":["...",...]} (restored_ids omitted
// when empty, as Go's omitempty).
std::string EncodeConfirmHistory(std::string_view identifier);
std::string EncodeRejectHistory(std::string_view identifier);
std::string EncodeRestoredWelcome(std::string_view sid,
                                  const std::vector<std::string>& restored_ids);
// Presence (ext protocol): {"type":"presence","identifier":"...","message":<message_json>}.
std::string EncodePresence(std::string_view identifier, std::string_view message_json);
// Presence event payloads (the "message" of EncodePresence). `info_json` is JSON text; empty =
// no info (omitted, as Go's omitempty).
std::string EncodePresenceEvent(std::string_view type, std::string_view id,
                                std::string_view info_json);
// {"type":"info","total":N,"records":[{"info":..,"id":".."},...]} (records omitted when empty).
std::string EncodePresenceInfo(const std::vector<std::pair<std::string, std::string>>& records);
// {"type":"error","total":0}
std::string EncodePresenceError();
// A broadcast with its broker position, for ext sessions:
// {"identifier":"...","message":<json>,"stream_id":"...","epoch":"...","offset":N}.
std::string EncodeBroadcastExt(std::string_view identifier, std::string_view message_json,
                               std::string_view stream, std::string_view epoch, uint64_t offset);
// Go's Reply has `omitempty` on sid and identifier: an empty sid/identifier drops the key.

// Broadcast delivery: {"identifier":"<escaped identifier>","message":<message_json>}.
// `message_json` must already be JSON (see MessageEncoder) and is copied verbatim.
std::string EncodeBroadcast(std::string_view identifier, std::string_view message_json);
// Exact length of the broadcast frame, for pre-sizing a shared frame buffer.
size_t BroadcastSize(std::string_view identifier, std::string_view message_json);
// Writes exactly BroadcastSize(identifier, message_json) bytes to `out`.
void WriteBroadcast(char* out, std::string_view identifier, std::string_view message_json);

// Turns a publication's `data` into the JSON placed after "message": (spec §5 item 18). Valid JSON
// other than the literal null is passed through verbatim (surrounding whitespace trimmed; we do
// not re-encode like Go, which sorts keys: semantically equal). Anything else (plain text, invalid
// JSON, "null") becomes a JSON string of `data`. Invalid UTF-8 inside JSON strings is replaced by
// U+FFFD, as Go would. Known gap: numbers beyond int64/uint64/double range count as invalid JSON.
class MessageEncoder {
 public:
  MessageEncoder();
  ~MessageEncoder();
  MessageEncoder(const MessageEncoder&) = delete;
  MessageEncoder& operator=(const MessageEncoder&) = delete;

  std::string MessageJson(std::string_view data);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cable::protocol
