// Worker <-> parent messages of ringcable-load, over one pipe each way per worker. Framing is
// [u32 type][u32 length][payload]; both ends are the same binary (fork), so plain structs travel
// as bytes. Single-threaded on both ends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "histogram.h"

namespace cable::load {

enum class MsgType : uint32_t {
  // worker -> parent
  kProgress = 1,   // Counters, about twice a second
  kPhaseDone = 2,  // Counters: every connection is subscribed or has failed
  kAck = 3,        // uint64: every live subscriber has seen a publication >= this seq; also sent
                   // once right after kMeasure, which tells the parent counting has started
  kResult = 4,     // Counters + handshake histogram + latency histogram
  kDropped = 5,    // restore mode: every subscribed socket is closed (no payload)
  // parent -> worker
  kMeasure = 10,  // start of the measured broadcast phase (no payload)
  kFinish = 11,   // uint64 publications sent; answer with kResult and exit
  kDrop = 12,     // restore mode: close every subscribed socket, keep its sid; answer kDropped
  kRestore = 13,  // restore mode: reconnect every dropped client with its sid (measured phase)
};

enum class Failure : uint8_t {
  kSocket,    // socket() / bind() failed (e.g. out of files or ports)
  kConnect,   // TCP connect failed
  kUpgrade,   // HTTP answer was not a valid 101 upgrade
  kProtocol,  // bad WebSocket frame
  kRejected,  // disconnect / reject_subscription from the server
  kClosed,    // closed by the server before confirm_subscription
  kTimeout,   // not subscribed when the connect phase ended
  kCount,
};

const char* FailureName(Failure f);

struct Counters {
  uint64_t attempted = 0;
  uint64_t subscribed = 0;  // reached confirm_subscription
  uint64_t failed = 0;
  uint64_t in_flight = 0;
  uint64_t live = 0;      // subscribed and still open
  uint64_t dropped = 0;   // subscribed, then closed by the server
  uint64_t measured = 0;  // subscribed when the broadcast phase started
  uint64_t deliveries = 0;
  uint64_t out_of_order = 0;
  uint64_t lost = 0;
  uint64_t restored = 0;      // restore mode: welcomed with "restored":true, history confirmed
  uint64_t not_restored = 0;  // restore mode: welcomed as a new session (counted as failed)
  uint64_t wire_bytes = 0;    // received from the server's sockets (TLS records, compressed frames)
                              // by measured connections during the broadcast phase
  uint64_t failures[static_cast<int>(Failure::kCount)] = {};
  int64_t first_start_ns = 0;    // CLOCK_MONOTONIC, first connect()
  int64_t last_ready_ns = 0;     // CLOCK_MONOTONIC, last confirm_subscription
  int64_t last_delivery_ns = 0;  // CLOCK_REALTIME, last publication received
  double cpu_s = 0;              // this worker's user+system CPU over the measured phase
  int first_errno = 0;           // of the first kSocket / kConnect / kClosed failure
  int first_status = 0;          // HTTP status of the first kUpgrade failure (0: not HTTP)
};

struct WorkerResult {
  Counters counters;
  Histogram handshake;  // ns, connect() -> confirm_subscription
  Histogram latency;    // ns, publication ts -> receipt
};

void AppendMessage(std::string* out, MsgType type, std::string_view payload);
std::string EncodeCounters(const Counters& c);
bool DecodeCounters(std::string_view in, Counters* c);
std::string EncodeResult(const WorkerResult& r);
bool DecodeResult(std::string_view in, WorkerResult* r);

// Reassembles framed messages from a byte stream.
class MessageReader {
 public:
  void Feed(std::string_view data);
  // true and fills type/payload (valid until the next Feed/Next) when a whole message is buffered.
  bool Next(MsgType* type, std::string_view* payload);

 private:
  std::string buf_;
  size_t pos_ = 0;
};

// Blocking write of all bytes (retries EINTR); false on error.
bool WriteAll(int fd, std::string_view data);

}  // namespace cable::load
