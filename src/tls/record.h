// TLS 1.3 record protection of our own (RFC 8446 §5.2–5.3, §7.1–7.3, §4.6.3), used by
// tls::Session once an established TLS 1.3 connection is quiet: OpenSSL's SSL object (~8 KiB) is
// freed and each direction keeps only what this file needs (a few hundred bytes in all).
//
// Ownership / threads: a Direction belongs to the Session (so to the connection and its worker
// thread). The EVP_CIPHER_CTX used to seal or open a record is not per connection: one per thread
// and cipher suite (thread_local in record.cc), keyed again for each record, so an idle connection
// holds no cipher context at all. Key material is wiped (OPENSSL_cleanse) when it is replaced or
// dropped; none of it is ever logged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cable::tls {

// The three TLS 1.3 suites implemented here (the IANA code points' low byte).
enum class Suite : uint8_t {
  kNone = 0,
  kAes128GcmSha256 = 0x01,
  kAes256GcmSha384 = 0x02,
  kChacha20Poly1305Sha256 = 0x03,
};

// From OpenSSL's cipher id (SSL_CIPHER_get_id): kNone for anything else.
Suite SuiteFromId(uint32_t openssl_id);
size_t SuiteHashLen(Suite s);  // 32 or 48
size_t SuiteKeyLen(Suite s);   // 16 or 32
inline constexpr size_t kIvLen = 12;
inline constexpr size_t kTagLen = 16;
inline constexpr size_t kMaxSecret = 48;
inline constexpr size_t kMaxPlain = 16384;             // 2^14
inline constexpr size_t kMaxCipher = kMaxPlain + 256;  // TLSCiphertext.length limit
inline constexpr size_t kHeaderLen = 5;

// HKDF-Expand-Label(secret, label, context, length) with the suite's hash (RFC 8446 §7.1); label
// without the "tls13 " prefix. False on failure (out untouched then).
bool HkdfExpandLabel(Suite s, const uint8_t* secret, size_t secret_len, const char* label,
                     const uint8_t* context, size_t context_len, uint8_t* out, size_t out_len);

// One direction's traffic protection: the current traffic secret (kept for KeyUpdate), the key and
// static IV derived from it, and the record sequence number.
struct Direction {
  uint8_t secret[kMaxSecret] = {};
  uint8_t key[32] = {};
  uint8_t iv[kIvLen] = {};
  uint64_t seq = 0;
  ~Direction() { Wipe(); }
  void Wipe();
  // Takes a traffic secret: derives key and iv, sequence number 0 (a new key always starts there).
  bool Set(Suite s, const uint8_t* traffic_secret, size_t len);
  // KeyUpdate: secret = HKDF-Expand-Label(secret, "traffic upd", "", Hash.length), then Set.
  bool Update(Suite s);
};

// Appends one record: header, then content || type encrypted, then the tag. len <= kMaxPlain.
bool Seal(Suite s, Direction& d, uint8_t inner_type, const uint8_t* data, size_t len,
          std::string* out);
// Opens one whole record (header + body, as received). Writes the inner plaintext (content
// without padding) to out (capacity kMaxCipher - kTagLen at least) and its type to *inner_type;
// returns its length, or -1 when the tag does not verify or the record is malformed (no non-zero
// type byte, or plaintext over 2^14 + 1).
long Open(Suite s, Direction& d, const uint8_t* record, size_t len, uint8_t* out,
          uint8_t* inner_type);

}  // namespace cable::tls
