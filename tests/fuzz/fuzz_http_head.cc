// libFuzzer target: http::ParseRequestHead on arbitrary bytes, with every invariant the server
// relies on after kComplete (views inside the buffer, head_size within it and under the limit).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http/http.h"

namespace {

bool Inside(std::string_view buf, std::string_view v) {
  return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view buf(reinterpret_cast<const char*>(data), size);
  // A small limit too, so the kHeadTooLarge path is reached with small inputs.
  for (size_t limit : {size_t{64}, size_t{16 * 1024}}) {
    cable::http::Request req;
    cable::http::ParseError err = cable::http::ParseError::kNone;
    cable::http::ParseStatus st = cable::http::ParseRequestHead(buf, limit, &req, &err);
    if (st == cable::http::ParseStatus::kIncomplete) Check(buf.size() <= limit);
    if (st != cable::http::ParseStatus::kComplete) continue;
    Check(req.head_size <= buf.size() && req.head_size <= limit);
    // An absolute-form target without a path ("http://host") gets a static "/" path.
    Check(Inside(buf, req.method) && Inside(buf, req.target) && Inside(buf, req.query) &&
          (Inside(buf, req.path) || req.path == "/"));
    Check(req.headers.size() <= cable::http::kMaxHeaders);
    for (const auto& h : req.headers) Check(Inside(buf, h.name) && Inside(buf, h.value));
    // What the listener does next with a complete head.
    cable::http::UpgradeRequest up;
    if (cable::http::CheckUpgrade(req, &up) == cable::http::UpgradeError::kNone) {
      Check(Inside(buf, up.key));
      auto proto = cable::http::SelectSubprotocol(up.protocols);
      (void)cable::http::BuildUpgradeResponse(cable::http::ComputeAcceptKey(up.key), proto, "1");
    }
    (void)cable::http::QueryParam(req.query, "token");
    (void)cable::http::PercentDecode(req.path);
    if (auto cookie = req.Get("cookie")) (void)cable::http::FilterCookies(*cookie, {"a", "b"});
    (void)cable::http::OriginAllowed(req.Get("origin"), {"*.example.com", "localhost:3000"});
    (void)cable::http::RequestUrl(req, false);
  }
  return 0;
}
