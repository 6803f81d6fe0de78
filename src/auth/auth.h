// Auth module: RPC-less authentication and stream authorization (spec §1 "JWT identification",
// "Signed streams ($pubsub)", "Turbo Streams / CableReady fast lane").
//
// - VerifyJwt: HMAC-signed JWTs (HS256/384/512 via OpenSSL) carrying connection identifiers in
//   the `ext` claim, as anycable-go's jwt identifier.
// - VerifySignedStream: Rails ActiveSupport::MessageVerifier strings (base64(JSON) + "--" + hex
//   HMAC-SHA256), as used by $pubsub, turbo-rails and CableReady.
// - ResolveBuiltinChannel: decides whether a subscribe identifier belongs to a built-in channel
//   and, if so, whether it is confirmed and to which stream.
//
// Threading: every function is pure and callable from any thread (the JSON parser is
// thread_local). Ownership: results own copies of everything they return.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace cable::auth {

enum class JwtError : uint8_t {
  kMalformed,       // not three base64url parts / header or payload not a JSON object / bad exp
  kAlgNone,         // "alg":"none" (unsigned tokens are never accepted)
  kUnsupportedAlg,  // RS256, ES256, unknown or missing alg: only HS256/384/512 are verified
  kBadSignature,    // HMAC mismatch (or the signature part is not valid base64url)
  kExpired,         // now >= exp
  kMissingExt,      // signature valid but no `ext` claim
  kExtNotString,    // `ext` present but not a JSON string
};
const char* JwtErrorName(JwtError e);

struct JwtClaims {
  std::string ext;  // connection identifiers JSON (the decoded `ext` string)
  int64_t exp = 0;  // 0 when absent
};

// `now_s`: Unix time in seconds. An empty secret never verifies (kBadSignature).
cable::Result<JwtClaims, JwtError> VerifyJwt(std::string_view token, std::string_view secret,
                                             int64_t now_s);

enum class SignedStreamError : uint8_t {
  kMalformed,     // not exactly "<data>--<digest>"
  kBadSignature,  // digest is not the hex HMAC-SHA256 of <data> with this secret
  kBadEncoding,   // signature fine but <data> is not std base64 of valid JSON
  kNotAString,    // decoded JSON is valid but not a string
};
const char* SignedStreamErrorName(SignedStreamError e);

// Returns the stream name. An empty secret never verifies (kBadSignature).
cable::Result<std::string, SignedStreamError> VerifySignedStream(std::string_view signed_name,
                                                                 std::string_view secret);

struct StreamsOptions {
  std::string streams_secret;  // $pubsub signed names
  bool public_streams = false;
  bool whisper = false;  // $pubsub subscriptions get istate $w = stream
  bool turbo_streams = false;
  std::string turbo_secret;
  bool cable_ready = false;
  std::string cable_ready_secret;
};

enum class BuiltinKind : uint8_t { kNone, kPubSub, kTurbo, kCableReady };

struct BuiltinDecision {
  BuiltinKind kind = BuiltinKind::kNone;  // kNone: not a built-in channel, use RPC
  bool confirmed = false;
  std::string stream;    // when confirmed
  bool whisper = false;  // when confirmed: set istate $w = stream
};

// `identifier` is the subscribe command's identifier string (JSON text). Turbo/CableReady are
// built-ins only when enabled; otherwise (and for any non-JSON identifier) kind is kNone.
BuiltinDecision ResolveBuiltinChannel(std::string_view identifier, const StreamsOptions& opts);

// Helpers shared with tests and the server.
std::string Base64Encode(std::string_view bytes);  // std alphabet, padded
std::string HexHmacSha256(std::string_view key, std::string_view message);

}  // namespace cable::auth
