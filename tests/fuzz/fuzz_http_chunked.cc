// libFuzzer target: http::DecodeChunkedBody on arbitrary bytes. The first byte picks max_body so
// the too-large path is reachable; decoded size and consumed count must stay within bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t max_body = data[0] < 128 ? data[0] : 16 * 1024 * 1024;
  std::string_view buf(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string body;
  size_t consumed = 0;
  cable::http::ParseStatus st = cable::http::DecodeChunkedBody(buf, max_body, &body, &consumed);
  if (st == cable::http::ParseStatus::kComplete) {
    if (consumed > buf.size() || body.size() > max_body || body.size() > consumed) std::abort();
    // Decoding must not depend on bytes after the encoded body.
    std::string again;
    size_t consumed2 = 0;
    if (cable::http::DecodeChunkedBody(buf.substr(0, consumed), max_body, &again, &consumed2) !=
            cable::http::ParseStatus::kComplete ||
        again != body || consumed2 != consumed) {
      std::abort();
    }
  }
  return 0;
}
