// Inbound WebSocket parsing for one server-side connection (RFC 6455 §5-§7).
//
// Threading/ownership: a FrameReader belongs to its connection and is used only by the ring thread
// that owns the connection; it is not thread-safe. Feed() borrows the input bytes for the duration
// of the call (they may live in a provided buffer that goes back to the ring right after).
//
// Memory: we hold up to a million connections on a ~1 KiB budget each, so an idle reader is 24
// bytes. The wslay event context (~8.5 KiB, it has 4 KiB in/out buffers) exists only while a frame
// or a fragmented message is partially received: it is created when bytes arrive and freed as soon
// as the input ends exactly on a message boundary. A tiny tracker of our own parses the frame
// headers of every byte fed (payload bytes left, header bytes seen, fragmented message open) so we
// know where the boundaries are.
//
// Division of labour: wslay reassembles data messages, validates UTF-8 of text (close 1007),
// enforces max_message_size (close 1009) and answers pings. The tracker rejects header-level
// violations itself with close 1002, because wslay 1.1.1 answers some of them (control frame
// > 125 bytes, fragmented control frame, non-minimal length encoding) with a close frame that has
// no status code at all. Close frames are handled by us too: wslay 1.1.1 validates the UTF-8 of a
// close reason wrongly when the frame arrives in pieces, and rejects codes 1012/1013 that gorilla
// (the reference server) accepts.
//
// Known wslay quirk kept: once wslay queues its own close-with-error (1007/1009), it drops pongs
// it queued earlier in the same Feed (RFC 6455 allows not answering pings while closing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "ws/frame.h"

namespace cable::ws {

class FrameReader {
 public:
  // Callbacks run synchronously inside Feed(). They must not destroy the reader or call Feed().
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnText(std::string_view message) = 0;  // complete (reassembled) text, valid UTF-8
    virtual void OnBinary(std::string_view message) = 0;
    virtual void OnPing(std::string_view /*payload*/) {
    }  // informational; the pong comes via OnControlBytes
    virtual void OnPong(std::string_view /*payload*/) {}
    // Peer sent close (code 1005 if it had no payload); our reply was already given to
    // OnControlBytes.
    virtual void OnClose(uint16_t code, std::string_view reason) = 0;
    // Bytes to write to the socket, in order: pongs, the close reply, or our close-with-error.
    virtual void OnControlBytes(std::string_view bytes) = 0;
    // 1002 protocol error, 1007 bad UTF-8, 1009 message too big. The matching close frame was
    // already given to OnControlBytes.
    virtual void OnProtocolError(uint16_t close_code) = 0;
  };

  FrameReader() = default;
  ~FrameReader();
  FrameReader(FrameReader&& other) noexcept;
  FrameReader& operator=(FrameReader&& other) noexcept;
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Feeds bytes read from the socket. Messages larger than max_message_size (0 = unlimited; do
  // not use 0 with untrusted peers, wslay allocates a frame's declared size up front) get close
  // 1009. After OnClose or OnProtocolError the reader is finished and further calls do nothing;
  // bytes after the peer's close frame are ignored.
  void Feed(std::string_view bytes, size_t max_message_size, Handler& handler);

  bool finished() const { return (flags_ & kFinished) != 0; }
  // permessage-deflate negotiated (set once, at the upgrade): a data message whose first frame has
  // RSV1 is inflated before the handler sees it, bounded by max_message_size (1009 beyond it, as
  // for a plain message; 1007 for corrupt data or bad UTF-8). Costs no memory per connection:
  // the inflater and its output buffer are per thread.
  void set_deflate(bool on);
  // No wslay context allocated: not inside a frame or fragmented message.
  bool idle() const { return state_ == nullptr; }

 private:
  struct State;
  // Out-of-line deleter so the header needs no definition of State (keeps the defaulted ctor).
  struct StateDeleter {
    void operator()(State* s) const;
  };
  enum class Stop { kNone, kError, kClose };

  static constexpr uint8_t kFragmentOpen = 1;
  static constexpr uint8_t kFinished = 2;
  static constexpr uint8_t kDeflate = 4;

  // Advances the header tracker over bytes. Stops early at a header violation (kError) or at the
  // first byte of a close frame (kClose); *stop_at is then where that frame starts in `bytes`
  // (0 if its header began in an earlier Feed). Otherwise *stop_at = bytes.size().
  Stop Scan(std::string_view bytes, size_t* stop_at);
  bool AtBoundary() const;
  State& EnsureState();
  // Runs wslay over bytes; returns false if the reader finished (wslay closed with an error).
  bool PumpWslay(std::string_view bytes, size_t max_message_size, Handler& handler);
  void CollectClose(std::string_view bytes, Handler& handler);
  void Fail(uint16_t code, Handler& handler);
  void Finish();

  std::unique_ptr<State, StateDeleter> state_;
  // Payload bytes left in the current frame; while a header is being read it accumulates the
  // extended payload length instead.
  uint64_t remaining_ = 0;
  uint8_t hdr0_ = 0;     // first header byte of the current frame (FIN, opcode)
  uint8_t hdr1_ = 0;     // second header byte (MASK, 7-bit length)
  uint8_t hdr_got_ = 0;  // header bytes seen so far; 0 = not inside a header
  uint8_t flags_ = 0;
};

}  // namespace cable::ws
