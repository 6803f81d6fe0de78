// Minimal client-side WebSocket (RFC 6455) pieces for the load tool: the upgrade request and
// response check, a masked frame encoder and an incremental frame reader that copes with input
// split anywhere. No I/O here; each worker connection owns one FrameReader and uses it from its
// worker's single event-loop thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace cable::load {

enum class Opcode : uint8_t {
  kContinuation = 0,
  kText = 1,
  kBinary = 2,
  kClose = 8,
  kPing = 9,
  kPong = 10,
};

enum class FrameError {
  kReservedBits,       // RSV1-3 set: no extension was negotiated
  kBadOpcode,          // opcode 3-7 or 11-15
  kFragmentedControl,  // control frame without FIN
  kControlTooLong,     // control frame payload > 125 bytes
  kUnexpectedContinuation,
  kExpectedContinuation,  // new data frame while a fragmented message is open
  kTooLarge,              // message above the reader's limit
  kCorrupt,               // a compressed message that does not inflate
};

const char* FrameErrorName(FrameError e);

struct WsMessage {
  Opcode opcode = Opcode::kText;
  // Points into the reader's buffer: valid until the next Feed() or Next() call.
  std::string_view payload;
};

class FrameReader {
 public:
  explicit FrameReader(size_t max_message = size_t{16} << 20) : max_message_(max_message) {}

  // permessage-deflate negotiated: RSV1 on the first frame of a data message marks it compressed;
  // Next() yields it inflated (bounded by max_message, kTooLarge beyond; kCorrupt for bad data).
  void set_deflate(bool on) { deflate_ = on; }
  uint64_t compressed_messages() const { return compressed_messages_; }

  void Feed(std::string_view data);
  // Yields the next complete message: data messages reassembled from fragments, control frames as
  // they come. ok(false) means more input is needed.
  Result<bool, FrameError> Next(WsMessage* msg);
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  std::string fragments_;
  Opcode fragment_opcode_ = Opcode::kText;
  bool in_fragment_ = false;
  bool fragment_compressed_ = false;
  bool deflate_ = false;
  uint64_t compressed_messages_ = 0;
  std::string inflated_;
  size_t max_message_;
  Result<bool, FrameError> Yield(WsMessage* msg, Opcode opcode, std::string_view body,
                                 bool compressed);
};

// Appends one masked client frame with FIN set.
void AppendClientFrame(std::string* out, Opcode opcode, std::string_view payload,
                       uint32_t mask_key);

// base64(SHA-1(key + RFC 6455 GUID)).
std::string WebSocketAccept(std::string_view key);

// The GET request for an actioncable-v1-json upgrade (actioncable-v1-ext-json with `ext`; offering
// permessage-deflate when asked).
std::string UpgradeRequest(std::string_view host_port, std::string_view path_and_query,
                           std::string_view key, bool deflate = false, bool ext = false);

enum class UpgradeError { kNotHttp, kStatus, kNoUpgrade, kBadAccept, kTooLong };

const char* UpgradeErrorName(UpgradeError e);

// Checks the server's answer to UpgradeRequest: status 101, "Upgrade: websocket" and the matching
// Sec-WebSocket-Accept. Returns the head length (the bytes after it are WebSocket frames) or 0
// while the head is incomplete; *status gets the status code once the status line is complete.
Result<size_t, UpgradeError> ParseUpgradeResponse(std::string_view data,
                                                  std::string_view expected_accept, int* status);

}  // namespace cable::load
