#include "http/http.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace cable::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kWsGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr size_t kMaxChunkLine = 4096;

char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}

std::string Lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ToLower(c);
  return out;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 9110 §5.6.2 tchar.
bool IsTchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsTchar(static_cast<unsigned char>(c)); });
}

bool IsCtl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Field values may contain HTAB, visible ASCII and obs-text, nothing else.
bool IsValidFieldValue(std::string_view v) {
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (IsCtl(c) && c != '\t') return false;
  }
  return true;
}

bool IsValidTarget(std::string_view t) {
  if (t.empty()) return false;
  for (char ch : t) {
    auto c = static_cast<unsigned char>(ch);
    if (IsCtl(c) || c == ' ') return false;
  }
  return true;
}

// Calls fn(token) for each comma-separated, OWS-trimmed, non-empty element of a header list.
template <typename Fn>
void ForEachListElement(std::string_view value, Fn&& fn) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view item = TrimOws(value.substr(0, comma));
    if (!item.empty()) fn(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

bool HeaderHasToken(const Request& req, std::string_view name, std::string_view token) {
  bool found = false;
  for (const Header& h : req.headers) {
    if (!EqualsIgnoreCase(h.name, name)) continue;
    ForEachListElement(h.value, [&](std::string_view item) {
      if (EqualsIgnoreCase(item, token)) found = true;
    });
  }
  return found;
}

bool ParseDecimal(std::string_view s, size_t* out) {
  if (s.empty()) return false;
  size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    size_t d = static_cast<size_t>(c - '0');
    if (v > (std::numeric_limits<size_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// base64 (standard alphabet, padded) of exactly 16 bytes is 22 symbols + "==". Like Go's
// non-strict StdEncoding, non-zero trailing bits are accepted.
bool IsValidChallengeKey(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, IsBase64Char);
}

// Percent-decodes; '+' becomes ' ' when plus_is_space. Returns false on a bad escape.
bool Unescape(std::string_view s, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return false;
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

// Parses one header line (without CRLF) into *h.
bool ParseHeaderLine(std::string_view line, Header* h) {
  if (line.empty() || IsOws(line.front())) return false;  // obs-fold or junk
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view name = line.substr(0, colon);
  if (!IsToken(name)) return false;  // also rejects "Name :" (RFC 9112 §5.1)
  std::string_view value = TrimOws(line.substr(colon + 1));
  if (!IsValidFieldValue(value)) return false;
  h->name = name;
  h->value = value;
  return true;
}

ParseStatus Fail(ParseError* err, ParseError e) {
  if (err) *err = e;
  return ParseStatus::kError;
}

// Splits target into path and query. Absolute-form ("http://host/p?q") keeps only the path part.
void SplitTarget(Request* r) {
  std::string_view t = r->target;
  size_t q = t.find('?');
  std::string_view path = t.substr(0, q);
  r->query = q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
  size_t scheme = path.find("://");
  if (!path.empty() && path.front() != '/' && scheme != std::string_view::npos) {
    size_t slash = path.find('/', scheme + 3);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  }
  r->path = path;
}

bool IsAbsoluteForm(std::string_view target) {
  return target.starts_with("http://") || target.starts_with("https://");
}

}  // namespace

std::optional<std::string_view> Request::Get(std::string_view name) const {
  for (const Header& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) return h.value;
  }
  return std::nullopt;
}

std::vector<std::string_view> Request::GetAll(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const Header& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) out.push_back(h.value);
  }
  return out;
}

ParseStatus ParseRequestHead(std::string_view buf, size_t max_head_bytes, Request* out,
                             ParseError* err) {
  if (err) *err = ParseError::kNone;
  size_t start = 0;
  while (buf.substr(start).starts_with(kCrlf)) start += 2;
  size_t end = buf.find("\r\n\r\n", start);
  // A request without headers ends "request-line CRLF CRLF"; find() covers that too.
  if (end == std::string_view::npos) {
    if (buf.size() > max_head_bytes) return Fail(err, ParseError::kHeadTooLarge);
    return ParseStatus::kIncomplete;
  }
  size_t head_size = end + 4;
  if (head_size > max_head_bytes) return Fail(err, ParseError::kHeadTooLarge);

  *out = Request{};
  out->head_size = head_size;
  std::string_view head = buf.substr(start, end + 2 - start);  // every line keeps its CRLF

  // Request line.
  size_t eol = head.find(kCrlf);
  std::string_view line = head.substr(0, eol);
  head.remove_prefix(eol + 2);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return Fail(err, ParseError::kMalformed);
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return Fail(err, ParseError::kMalformed);
  out->method = line.substr(0, sp1);
  out->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(out->method) || !IsValidTarget(out->target)) {
    return Fail(err, ParseError::kMalformed);
  }
  if (version.size() != 8 || !version.starts_with("HTTP/") || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return Fail(err, ParseError::kMalformed);
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return Fail(err, ParseError::kUnsupportedVersion);
  }
  out->minor_version = version[7] - '0';
  SplitTarget(out);

  // Header lines.
  std::optional<std::string_view> transfer_encoding;
  while (!head.empty()) {
    eol = head.find(kCrlf);
    line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    if (out->headers.size() == kMaxHeaders) return Fail(err, ParseError::kMalformed);
    Header h;
    if (!ParseHeaderLine(line, &h)) return Fail(err, ParseError::kMalformed);
    out->headers.push_back(h);
    if (EqualsIgnoreCase(h.name, "Content-Length")) {
      size_t n = 0;
      if (out->content_length || !ParseDecimal(h.value, &n)) {
        return Fail(err, ParseError::kBadContentLength);
      }
      out->content_length = n;
    } else if (EqualsIgnoreCase(h.name, "Transfer-Encoding")) {
      transfer_encoding = h.value;  // the last coding of the last header is what counts
    }
  }
  if (transfer_encoding) {
    if (out->content_length) return Fail(err, ParseError::kBadContentLength);
    std::string_view last;
    for (std::string_view v : out->GetAll("Transfer-Encoding")) {
      ForEachListElement(v, [&](std::string_view item) { last = item; });
    }
    if (!EqualsIgnoreCase(last, "chunked")) return Fail(err, ParseError::kMalformed);
    out->chunked = true;
  }
  return ParseStatus::kComplete;
}

ParseStatus DecodeChunkedBody(std::string_view buf, size_t max_body, std::string* out,
                              size_t* consumed) {
  out->clear();
  size_t pos = 0;
  while (true) {
    // chunk-size [; ext] CRLF
    size_t eol = buf.find(kCrlf, pos);
    if (eol == std::string_view::npos) {
      return buf.size() - pos > kMaxChunkLine ? ParseStatus::kError : ParseStatus::kIncomplete;
    }
    if (eol - pos > kMaxChunkLine) return ParseStatus::kError;
    std::string_view line = buf.substr(pos, eol - pos);
    size_t size = 0;
    size_t digits = 0;
    while (digits < line.size() && HexValue(line[digits]) >= 0) {
      if (size > (std::numeric_limits<size_t>::max() >> 4)) return ParseStatus::kError;
      size = size * 16 + static_cast<size_t>(HexValue(line[digits]));
      ++digits;
    }
    if (digits == 0) return ParseStatus::kError;
    std::string_view rest = TrimOws(line.substr(digits));
    if (!rest.empty() && rest.front() != ';') return ParseStatus::kError;
    if (!IsValidFieldValue(rest)) return ParseStatus::kError;
    pos = eol + 2;
    if (size == 0) break;
    if (size > max_body || out->size() > max_body - size) return ParseStatus::kError;
    if (buf.size() - pos < size + 2) return ParseStatus::kIncomplete;
    if (buf.substr(pos + size, 2) != kCrlf) return ParseStatus::kError;
    out->append(buf.substr(pos, size));
    pos += size + 2;
  }
  // Trailer section: header lines until an empty line.
  while (true) {
    size_t eol = buf.find(kCrlf, pos);
    if (eol == std::string_view::npos) {
      return buf.size() - pos > kMaxChunkLine ? ParseStatus::kError : ParseStatus::kIncomplete;
    }
    if (eol - pos > kMaxChunkLine) return ParseStatus::kError;
    std::string_view line = buf.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    Header h;
    if (!ParseHeaderLine(line, &h)) return ParseStatus::kError;
  }
  *consumed = pos;
  return ParseStatus::kComplete;
}

UpgradeError CheckUpgrade(const Request& req, UpgradeRequest* out) {
  if (!HeaderHasToken(req, "Connection", "upgrade") ||
      !HeaderHasToken(req, "Upgrade", "websocket")) {
    return UpgradeError::kNotUpgrade;
  }
  if (req.method != "GET") return UpgradeError::kBadMethod;
  if (req.minor_version != 1) return UpgradeError::kNotUpgrade;
  if (!HeaderHasToken(req, "Sec-WebSocket-Version", "13")) return UpgradeError::kBadVersion;
  std::optional<std::string_view> key = req.Get("Sec-WebSocket-Key");
  if (!key || !IsValidChallengeKey(*key)) return UpgradeError::kMissingKey;
  out->key = *key;
  out->protocols.clear();
  for (std::string_view v : req.GetAll("Sec-WebSocket-Protocol")) {
    ForEachListElement(v, [&](std::string_view item) { out->protocols.push_back(item); });
  }
  return UpgradeError::kNone;
}

int UpgradeErrorStatus(UpgradeError e) {
  switch (e) {
    case UpgradeError::kNone:
      return 101;
    case UpgradeError::kBadMethod:
      return 405;
    case UpgradeError::kBadVersion:
      return 400;  // gorilla/websocket answers 400 (with Sec-WebSocket-Version: 13)
    case UpgradeError::kNotUpgrade:
    case UpgradeError::kMissingKey:
      return 400;
  }
  return 400;
}

std::string ComputeAcceptKey(std::string_view key) {
  std::string input;
  input.reserve(key.size() + kWsGuid.size());
  input.append(key).append(kWsGuid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char encoded[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<size_t>(n));
}

std::optional<std::string_view> SelectSubprotocol(const std::vector<std::string_view>& offered,
                                                  const std::vector<std::string_view>& supported) {
  for (std::string_view server : supported) {
    if (server.starts_with("anycable-token.")) continue;
    for (std::string_view client : offered) {
      if (client == server) return client;
    }
  }
  return std::nullopt;
}

bool OffersPermessageDeflate(const Request& req) {
  for (std::string_view value : req.GetAll("sec-websocket-extensions")) {
    while (!value.empty()) {
      size_t comma = value.find(',');
      std::string_view ext = value.substr(0, comma);
      ext = ext.substr(0, ext.find(';'));  // the extension name, before its parameters
      while (!ext.empty() && (ext.front() == ' ' || ext.front() == '\t')) ext.remove_prefix(1);
      while (!ext.empty() && (ext.back() == ' ' || ext.back() == '\t')) ext.remove_suffix(1);
      if (ext == "permessage-deflate") return true;
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return false;
}

std::string BuildUpgradeResponse(std::string_view accept_key,
                                 std::optional<std::string_view> protocol,
                                 std::string_view anycable_version, std::string_view extensions) {
  std::string r;
  r.reserve(192);
  r.append(
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ");
  r.append(accept_key).append(kCrlf);
  if (protocol) r.append("Sec-WebSocket-Protocol: ").append(*protocol).append(kCrlf);
  if (!extensions.empty()) r.append("Sec-WebSocket-Extensions: ").append(extensions).append(kCrlf);
  r.append("X-AnyCable-Version: ").append(anycable_version).append(kCrlf);
  r.append(kCrlf);
  return r;
}

std::string BuildResponse(int status, std::string_view body, std::string_view content_type,
                          const std::vector<std::pair<std::string, std::string>>& extra_headers,
                          bool close) {
  std::string r;
  r.reserve(128 + body.size());
  r.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(StatusText(status));
  r.append(kCrlf);
  bool no_body_status = (status >= 100 && status < 200) || status == 204;
  if (!content_type.empty() && (!body.empty() || content_type != kDefaultContentType)) {
    r.append("Content-Type: ").append(content_type).append(kCrlf);
  }
  if (!no_body_status) {
    r.append("Content-Length: ").append(std::to_string(body.size())).append(kCrlf);
  }
  for (const auto& [name, value] : extra_headers) {
    r.append(name).append(": ").append(value).append(kCrlf);
  }
  if (close) r.append("Connection: close\r\n");
  r.append(kCrlf);
  if (!no_body_status) r.append(body);
  return r;
}

std::string_view StatusText(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Request Entity Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  std::string key;
  std::string value;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string_view raw_key = pair.substr(0, eq);
    std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (!Unescape(raw_key, true, &key) || key != name) continue;
    if (!Unescape(raw_value, true, &value)) continue;
    return value;
  }
  return std::nullopt;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string FilterCookies(std::string_view cookie_header, const std::vector<std::string>& allowed) {
  if (allowed.empty()) return std::string(cookie_header);
  std::string out;
  while (true) {
    size_t semi = cookie_header.find(';');
    std::string_view cookie = cookie_header.substr(0, semi);
    size_t eq = cookie.find('=');
    if (eq != std::string_view::npos) {
      std::string_view name = TrimOws(cookie.substr(0, eq));
      std::string_view value = TrimOws(cookie.substr(eq + 1));
      if (!name.empty() && std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
        if (!out.empty()) out.append("; ");
        out.append(name).append("=").append(value);
      }
    }
    if (semi == std::string_view::npos) break;
    cookie_header.remove_prefix(semi + 1);
  }
  return out;
}

bool OriginAllowed(std::optional<std::string_view> origin_header,
                   const std::vector<std::string>& allowed) {
  if (allowed.empty()) return true;
  if (!origin_header) return false;
  std::string origin = Lowercase(TrimOws(*origin_header));
  // url.Parse(origin).Host: the authority after "scheme://", without userinfo.
  size_t scheme = origin.find("://");
  if (scheme == std::string::npos) return false;
  std::string_view host = std::string_view(origin).substr(scheme + 3);
  host = host.substr(0, host.find_first_of("/?#"));
  if (size_t at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
  if (host.empty()) return false;
  for (const std::string& raw : allowed) {
    std::string entry = Lowercase(TrimOws(raw));
    if (entry.empty()) continue;
    if (entry.front() == '*') {
      if (host.ends_with(std::string_view(entry).substr(1))) return true;
    } else if (host == entry) {
      return true;
    }
  }
  return false;
}

std::string RequestUrl(const Request& req, bool tls) {
  if (IsAbsoluteForm(req.target)) return std::string(req.target);
  std::string url = tls ? "https://" : "http://";
  url.append(req.Get("Host").value_or(std::string_view()));
  url.append(req.target);
  return url;
}

}  // namespace cable::http
