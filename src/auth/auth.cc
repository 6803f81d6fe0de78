#include "auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <simdjson.h>
#include <optional>

namespace cable::auth {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int B64Value(unsigned char ch, bool url) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == (url ? '-' : '+')) return 62;
  if (ch == (url ? '_' : '/')) return 63;
  return -1;
}

// url = base64url without padding (JWT, RFC 7515); !url = std alphabet with mandatory padding
// (Go's base64.StdEncoding, which anycable-go uses for signed streams).
std::optional<std::string> B64Decode(std::string_view in, bool url) {
  if (!url) {
    if (in.size() % 4 != 0) return std::nullopt;
    size_t pad = 0;
    while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
    in.remove_suffix(pad);
  } else if (in.size() % 4 == 1) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    int v = B64Value(ch, url);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero (strict decoding, as Go).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string RawHmac(const EVP_MD* md, std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(md, key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest,
           &len) == nullptr) {
    return std::string();
  }
  return std::string(reinterpret_cast<char*>(digest), len);
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

simdjson::dom::parser& Parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

}  // namespace

const char* JwtErrorName(JwtError e) {
  switch (e) {
    case JwtError::kMalformed:
      return "malformed";
    case JwtError::kAlgNone:
      return "alg none";
    case JwtError::kUnsupportedAlg:
      return "unsupported alg";
    case JwtError::kBadSignature:
      return "bad signature";
    case JwtError::kExpired:
      return "expired";
    case JwtError::kMissingExt:
      return "missing ext";
    case JwtError::kExtNotString:
      return "ext not a string";
  }
  return "?";
}

const char* SignedStreamErrorName(SignedStreamError e) {
  switch (e) {
    case SignedStreamError::kMalformed:
      return "malformed";
    case SignedStreamError::kBadSignature:
      return "bad signature";
    case SignedStreamError::kBadEncoding:
      return "bad encoding";
    case SignedStreamError::kNotAString:
      return "not a string";
  }
  return "?";
}

std::string Base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                 (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                 static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string HexHmacSha256(std::string_view key, std::string_view message) {
  std::string raw = RawHmac(EVP_sha256(), key, message);
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char ch : raw) {
    out += kHex[ch >> 4];
    out += kHex[ch & 0xf];
  }
  return out;
}

cable::Result<JwtClaims, JwtError> VerifyJwt(std::string_view token, std::string_view secret,
                                             int64_t now_s) {
  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return cable::MakeError(JwtError::kMalformed);
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return cable::MakeError(JwtError::kMalformed);
  }
  auto header = B64Decode(token.substr(0, dot1), true);
  auto payload = B64Decode(token.substr(dot1 + 1, dot2 - dot1 - 1), true);
  if (!header || !payload) return cable::MakeError(JwtError::kMalformed);

  simdjson::dom::parser& parser = Parser();
  std::string alg;
  {
    simdjson::dom::element doc;
    simdjson::dom::object obj;
    if (parser.parse(*header).get(doc) || doc.get(obj)) {
      return cable::MakeError(JwtError::kMalformed);
    }
    std::string_view a;
    if (obj["alg"].get(a)) return cable::MakeError(JwtError::kUnsupportedAlg);
    alg = std::string(a);
  }
  const EVP_MD* md = nullptr;
  if (alg == "HS256") {
    md = EVP_sha256();
  } else if (alg == "HS384") {
    md = EVP_sha384();
  } else if (alg == "HS512") {
    md = EVP_sha512();
  } else if (alg == "none") {
    return cable::MakeError(JwtError::kAlgNone);
  } else {
    return cable::MakeError(JwtError::kUnsupportedAlg);
  }
  auto signature = B64Decode(token.substr(dot2 + 1), true);
  if (secret.empty() || !signature ||
      !ConstantTimeEqual(*signature, RawHmac(md, secret, token.substr(0, dot2)))) {
    return cable::MakeError(JwtError::kBadSignature);
  }

  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (parser.parse(*payload).get(doc) || doc.get(obj)) {
    return cable::MakeError(JwtError::kMalformed);
  }
  JwtClaims claims;
  simdjson::dom::element exp;
  if (!obj["exp"].get(exp)) {
    double e = 0;
    if (exp.is_int64()) {
      e = static_cast<double>(exp.get_int64().value());
    } else if (exp.is_uint64()) {
      e = static_cast<double>(exp.get_uint64().value());
    } else if (exp.is_double()) {
      e = exp.get_double().value();
    } else {
      return cable::MakeError(JwtError::kMalformed);
    }
    if (static_cast<double>(now_s) >= e) return cable::MakeError(JwtError::kExpired);
    claims.exp = static_cast<int64_t>(e);
  }
  simdjson::dom::element ext;
  if (obj["ext"].get(ext)) return cable::MakeError(JwtError::kMissingExt);
  std::string_view ext_str;
  if (ext.get(ext_str)) return cable::MakeError(JwtError::kExtNotString);
  claims.ext = std::string(ext_str);
  return claims;
}

cable::Result<std::string, SignedStreamError> VerifySignedStream(std::string_view signed_name,
                                                                 std::string_view secret) {
  const size_t sep = signed_name.find("--");
  if (sep == std::string_view::npos || signed_name.find("--", sep + 2) != std::string_view::npos) {
    return cable::MakeError(SignedStreamError::kMalformed);
  }
  std::string_view data = signed_name.substr(0, sep);
  std::string_view digest = signed_name.substr(sep + 2);
  if (data.empty() || digest.empty()) return cable::MakeError(SignedStreamError::kMalformed);
  if (secret.empty() || !ConstantTimeEqual(digest, HexHmacSha256(secret, data))) {
    return cable::MakeError(SignedStreamError::kBadSignature);
  }
  auto decoded = B64Decode(data, false);
  if (!decoded) return cable::MakeError(SignedStreamError::kBadEncoding);
  simdjson::dom::element doc;
  if (Parser().parse(*decoded).get(doc)) return cable::MakeError(SignedStreamError::kBadEncoding);
  std::string_view name;
  if (doc.get(name)) return cable::MakeError(SignedStreamError::kNotAString);
  return std::string(name);
}

BuiltinDecision ResolveBuiltinChannel(std::string_view identifier, const StreamsOptions& opts) {
  BuiltinDecision out;
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (Parser().parse(identifier.data(), identifier.size()).get(doc) || doc.get(obj)) return out;
  std::string_view channel;
  if (obj["channel"].get(channel)) return out;
  std::string_view signed_field = "signed_stream_name";
  const std::string* secret = nullptr;
  if (channel == "$pubsub") {
    out.kind = BuiltinKind::kPubSub;
    secret = &opts.streams_secret;
  } else if (channel == "Turbo::StreamsChannel" && opts.turbo_streams) {
    out.kind = BuiltinKind::kTurbo;
    secret = &opts.turbo_secret;
  } else if (channel == "CableReady::Stream" && opts.cable_ready) {
    out.kind = BuiltinKind::kCableReady;
    secret = &opts.cable_ready_secret;
    signed_field = "identifier";
  } else {
    return out;
  }
  std::string_view value;
  if (!obj[signed_field].get(value)) {
    // Copy first: verification reuses the thread's parser, which owns `value`'s bytes.
    std::string signed_name(value);
    auto verified = VerifySignedStream(signed_name, *secret);
    if (!verified.ok()) return out;
    out.stream = std::move(verified.value());
  } else if (out.kind == BuiltinKind::kPubSub && opts.public_streams &&
             !obj["stream_name"].get(value)) {
    out.stream = std::string(value);
  } else {
    return out;
  }
  if (out.stream.empty()) return out;
  out.confirmed = true;
  out.whisper = out.kind == BuiltinKind::kPubSub && opts.whisper;
  return out;
}

}  // namespace cable::auth
