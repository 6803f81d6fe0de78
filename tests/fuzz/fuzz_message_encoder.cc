// libFuzzer target: protocol::MessageEncoder and the JSON string escaper. Every output must be
// valid JSON (checked with simdjson, a different parser path than the encoder's own validation),
// and the size helpers must agree with the writers.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/encode.h"

namespace {

bool ValidJson(const std::string& s) {
  static simdjson::dom::parser parser;
  simdjson::padded_string padded(s);
  return parser.parse(padded).error() == simdjson::SUCCESS;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cable::protocol::MessageEncoder encoder;
  std::string_view in(reinterpret_cast<const char*>(data), size);

  std::string msg = encoder.MessageJson(in);
  if (!ValidJson(msg)) std::abort();

  std::string quoted;
  cable::protocol::AppendJsonString(quoted, in);
  if (quoted.size() != cable::protocol::JsonStringSize(in) || !ValidJson(quoted)) std::abort();

  std::string frame = cable::protocol::EncodeBroadcast(in, msg);
  size_t n = cable::protocol::BroadcastSize(in, msg);
  if (frame.size() != n || !ValidJson(frame)) std::abort();
  std::vector<char> buf(n);
  cable::protocol::WriteBroadcast(buf.data(), in, msg);
  if (std::string_view(buf.data(), n) != frame) std::abort();

  if (!ValidJson(cable::protocol::EncodeWelcome(in)) ||
      !ValidJson(cable::protocol::EncodeConfirm(in)) ||
      !ValidJson(cable::protocol::EncodeDisconnect(in, true))) {
    std::abort();
  }
  return 0;
}
