// libFuzzer target: protocol::BroadcastParser on arbitrary /_broadcast bodies, then what the
// server does with each publication (MessageEncoder + EncodeBroadcast).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "protocol/broadcast.h"
#include "protocol/encode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cable::protocol::BroadcastParser parser;
  static cable::protocol::MessageEncoder encoder;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto items = parser.Parse(body);
  if (!items.ok()) return 0;
  if (items.value().empty()) std::abort();  // success always carries at least one item
  for (const auto& item : items.value()) {
    if (const auto* pub = std::get_if<cable::protocol::Publication>(&item)) {
      if (pub->stream.empty()) std::abort();
      std::string msg = encoder.MessageJson(pub->data);
      std::string frame = cable::protocol::EncodeBroadcast(pub->stream, msg);
      if (frame.size() != cable::protocol::BroadcastSize(pub->stream, msg)) std::abort();
    }
  }
  return 0;
}
