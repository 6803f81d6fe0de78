// libFuzzer target: protocol::CommandDecoder on arbitrary text frames. One decoder is reused
// across inputs, as a worker reuses it across frames, so state leaking between calls shows up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cable::protocol::CommandDecoder decoder;
  std::string_view frame(reinterpret_cast<const char*>(data), size);
  auto first = decoder.Decode(frame);
  auto second = decoder.Decode(frame);
  // Deterministic: the same frame decodes the same way on a reused decoder.
  if (first.ok() != second.ok()) std::abort();
  if (first.ok()) {
    const auto& a = first.value();
    const auto& b = second.value();
    if (a.type != b.type || a.name != b.name || a.identifier != b.identifier || a.data != b.data ||
        a.has_data != b.has_data || a.history != b.history || a.presence != b.presence) {
      std::abort();
    }
    if (a.type != cable::protocol::CommandTypeFromName(a.name)) std::abort();
  } else if (first.error() != second.error()) {
    std::abort();
  }
  return 0;
}
