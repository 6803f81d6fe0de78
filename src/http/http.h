// HTTP/1.1 request-head parsing and response building for the listener: request heads, chunked
// bodies, the WebSocket upgrade handshake (RFC 6455 §4.2), and the small helpers the AnyCable
// endpoints need (query params, cookie filter, origin check, env.url).
//
// Pure functions with no sockets and no shared state: any thread may call them. A parsed Request
// holds string_views into the caller's buffer, so the buffer must outlive the Request and must
// not be modified while the Request is in use.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cable::http {

struct Header {
  std::string_view name;
  std::string_view value;  // trimmed of surrounding spaces/tabs
};

struct Request {
  std::string_view method, target, path,
      query;  // target = path[?query]; views into the caller's buffer
  int minor_version = 1;
  std::vector<Header> headers;
  size_t head_size = 0;  // bytes up to and including the blank line
  std::optional<size_t> content_length;
  bool chunked = false;  // Transfer-Encoding: chunked

  // Case-insensitive lookup; the first value (already trimmed).
  std::optional<std::string_view> Get(std::string_view name) const;
  std::vector<std::string_view> GetAll(std::string_view name) const;
};

enum class ParseStatus { kComplete, kIncomplete, kError };
enum class ParseError { kNone, kMalformed, kHeadTooLarge, kUnsupportedVersion, kBadContentLength };

// At most this many header lines; more is kMalformed.
constexpr size_t kMaxHeaders = 100;

// Parses the head from the start of `buf`. The caller accumulates bytes and calls again when more
// arrive (re-parsing a small head is cheap). kIncomplete while no blank line has been seen and
// buf.size() <= max_head_bytes. Leading empty lines (RFC 9112 §2.2) are skipped and counted in
// head_size. Lines must end in CRLF. On kError, *err says why and *out is unspecified.
// Transfer-Encoding together with Content-Length is rejected (kBadContentLength) because the two
// disagreeing is the classic request-smuggling vector; a Transfer-Encoding whose last coding is not
// "chunked" is kMalformed.
ParseStatus ParseRequestHead(std::string_view buf, size_t max_head_bytes, Request* out,
                             ParseError* err);

// Decodes a chunked body from the start of `buf` (the bytes after the head). kComplete fills *out
// with the decoded body and *consumed with the encoded length including the trailer section.
// kError on malformed framing, a decoded body larger than max_body, or a size/trailer line over
// 4 KiB (so a peer cannot make us buffer unbounded framing).
ParseStatus DecodeChunkedBody(std::string_view buf, size_t max_body, std::string* out,
                              size_t* consumed);

// WebSocket upgrade validation (RFC 6455 §4.2.1), in gorilla/websocket's order: Connection must
// contain the "upgrade" token and Upgrade the "websocket" token (else kNotUpgrade; HTTP/1.0 is also
// kNotUpgrade), the method must be GET, Sec-WebSocket-Version must contain 13, and
// Sec-WebSocket-Key must be base64 of exactly 16 bytes.
enum class UpgradeError { kNone, kNotUpgrade, kBadMethod, kBadVersion, kMissingKey };
struct UpgradeRequest {
  std::string_view key;
  std::vector<std::string_view>
      protocols;  // all Sec-WebSocket-Protocol headers, comma-split, trimmed
};
UpgradeError CheckUpgrade(const Request& req, UpgradeRequest* out);

// HTTP status for a failed upgrade: 400, except 405 for kBadMethod (as gorilla) and 426 for
// kBadVersion. Every failed upgrade response should carry "Sec-WebSocket-Version: 13".
int UpgradeErrorStatus(UpgradeError e);

// base64(SHA1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string ComputeAcceptKey(std::string_view key);

// Server preference order (gorilla): the first entry of `supported` the client offered wins, so
// "actioncable-v1-json" beats "actioncable-v1-ext-json" when both are offered. nullopt when none
// match (the upgrade still succeeds, without the header). "anycable-token.*" is never selected.
// The result is a view into `offered`. Matching is exact (case-sensitive), as in gorilla.
std::optional<std::string_view> SelectSubprotocol(const std::vector<std::string_view>& offered,
                                                  const std::vector<std::string_view>& supported = {
                                                      "actioncable-v1-json"});

// "HTTP/1.1 101 Switching Protocols" with Upgrade, Connection, Sec-WebSocket-Accept,
// [Sec-WebSocket-Protocol] and X-AnyCable-Version, ending with the blank line.
std::string BuildUpgradeResponse(std::string_view accept_key,
                                 std::optional<std::string_view> protocol,
                                 std::string_view anycable_version,
                                 std::string_view extensions = {});

// True when a Sec-WebSocket-Extensions header of the request offers permessage-deflate (any
// parameters: like gorilla/websocket, the server answers with no context takeover either way).
bool OffersPermessageDeflate(const Request& req);

inline constexpr std::string_view kDefaultContentType = "text/plain; charset=utf-8";

// Generic response head + body. Adds Content-Length (not for 1xx/204), Content-Type when the body
// is non-empty or a non-default content_type is passed (an empty content_type suppresses it), the
// extra headers in order, and "Connection: close" when close=true.
std::string BuildResponse(
    int status, std::string_view body, std::string_view content_type = kDefaultContentType,
    const std::vector<std::pair<std::string, std::string>>& extra_headers = {}, bool close = false);

// Reason phrase for the status codes we emit; "Unknown" otherwise.
std::string_view StatusText(int status);

// First value of `name` in a query string (without the '?'), decoded like Go's url.ParseQuery:
// percent escapes and '+' -> ' '. Pairs whose key or value has a bad escape are skipped, as Go
// does. A key without '=' has the empty value.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

// Decodes %XX escapes; invalid escapes are kept literally. '+' is NOT translated (path semantics).
std::string PercentDecode(std::string_view s);

// --proxy-cookies: keeps only cookies named in `allowed`, output "a=1; b=2". An empty `allowed`
// returns the header unchanged (as Go does). Unlike Go (spec §5 item 31) names and values are
// trimmed, so cookies after the first survive, and values containing '=' are kept.
// Entries without '=' are dropped.
std::string FilterCookies(std::string_view cookie_header, const std::vector<std::string>& allowed);

// --allowed_origins (anycable-go CheckOrigin): empty list = allow all. Otherwise the Origin's
// host[:port], lowercased, must equal an entry, or end with entry[1:] for entries starting with
// '*' ("*.example.com" matches "a.example.com", not "example.com"). Missing Origin fails.
bool OriginAllowed(std::optional<std::string_view> origin_header,
                   const std::vector<std::string>& allowed);

// Full request URL for env.url: an absolute-form target is returned as is, otherwise
// "http(s)://" + Host + target (never ws://). `tls` selects https.
std::string RequestUrl(const Request& req, bool tls);

}  // namespace cable::http
