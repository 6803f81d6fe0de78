// libFuzzer target: ws::FrameReader fed arbitrary bytes in arbitrary splits. The first bytes of
// the input choose the split sizes and max_message_size; the rest is the client byte stream. The
// same stream is also fed in one piece to a second reader: the data messages and the final
// close/error must not depend on how the bytes were split (control bytes may: wslay answers pings
// per Feed, see reader.h).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "ws/reader.h"

namespace {

class Recorder : public cable::ws::FrameReader::Handler {
 public:
  void OnText(std::string_view m) override { events.push_back("T" + std::string(m)); }
  void OnBinary(std::string_view m) override { events.push_back("B" + std::string(m)); }
  void OnClose(uint16_t code, std::string_view reason) override {
    events.push_back("C" + std::to_string(code) + ":" + std::string(reason));
  }
  void OnControlBytes(std::string_view bytes) override { control += bytes; }
  void OnProtocolError(uint16_t code) override { events.push_back("E" + std::to_string(code)); }
  std::vector<std::string> events;
  std::string control;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const size_t max_message = 1 + (data[0] | (data[1] << 8));  // 1..65536: never 0 (unlimited)
  const uint8_t split_seed = data[2];
  const uint8_t split_mod = data[3];
  std::string_view stream(reinterpret_cast<const char*>(data) + 4, size - 4);

  Recorder split_rec;
  cable::ws::FrameReader split_reader;
  size_t pos = 0;
  uint32_t x = split_seed | 1u;
  while (pos < stream.size() && !split_reader.finished()) {
    x = x * 1103515245u + 12345u;
    size_t n = 1 + (x >> 16) % (1 + split_mod);
    if (n > stream.size() - pos) n = stream.size() - pos;
    split_reader.Feed(stream.substr(pos, n), max_message, split_rec);
    pos += n;
  }
  // Finished readers ignore further input.
  if (split_reader.finished()) {
    size_t before = split_rec.events.size();
    split_reader.Feed(stream, max_message, split_rec);
    if (split_rec.events.size() != before) std::abort();
  }

  Recorder whole_rec;
  cable::ws::FrameReader whole_reader;
  whole_reader.Feed(stream, max_message, whole_rec);

  if (split_rec.events != whole_rec.events) std::abort();
  if (split_reader.finished() != whole_reader.finished()) std::abort();
  return 0;
}
