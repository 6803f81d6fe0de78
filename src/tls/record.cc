#include "tls/record.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstring>

namespace cable::tls {
namespace {

const char* DigestName(Suite s) { return s == Suite::kAes256GcmSha384 ? "SHA384" : "SHA256"; }

int SuiteIndex(Suite s) { return static_cast<int>(s) - 1; }  // 0..2 for the real suites

// One cipher per suite and one context per (suite, direction of use) on each thread, freed at
// thread exit. The context is set up once with its cipher and then keyed per record.
struct ThreadCiphers {
  EVP_CIPHER* cipher[3] = {};
  EVP_CIPHER_CTX* ctx[3][2] = {};
  // The key each context holds now: consecutive records of one connection skip the key schedule.
  uint8_t keyed[3][2][32] = {};
  bool has_key[3][2] = {};
  EVP_KDF* hkdf = nullptr;
  EVP_KDF_CTX* hkdf_ctx[2] = {};  // SHA-256, SHA-384
  ~ThreadCiphers() {
    for (EVP_KDF_CTX* k : hkdf_ctx) EVP_KDF_CTX_free(k);
    OPENSSL_cleanse(keyed, sizeof(keyed));
    for (auto& pair : ctx) {
      for (EVP_CIPHER_CTX* c : pair) EVP_CIPHER_CTX_free(c);
    }
    for (EVP_CIPHER* c : cipher) EVP_CIPHER_free(c);
    EVP_KDF_free(hkdf);
  }
  EVP_CIPHER_CTX* Get(Suite s, bool enc) {
    int i = SuiteIndex(s);
    if (i < 0 || i > 2) return nullptr;
    if (!cipher[i]) {
      static const char* const kNames[3] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
      cipher[i] = EVP_CIPHER_fetch(nullptr, kNames[i], nullptr);
      if (!cipher[i]) return nullptr;
    }
    EVP_CIPHER_CTX*& c = ctx[i][enc ? 1 : 0];
    if (!c) {
      c = EVP_CIPHER_CTX_new();
      if (!c || EVP_CipherInit_ex(c, cipher[i], nullptr, nullptr, nullptr, enc ? 1 : 0) != 1) {
        EVP_CIPHER_CTX_free(c);
        c = nullptr;
      }
    }
    return c;
  }
  // The context for `s` set up with key (unless it holds it already) and nonce; null on failure.
  EVP_CIPHER_CTX* Keyed(Suite s, bool enc, const uint8_t* key, const uint8_t* nonce) {
    EVP_CIPHER_CTX* c = Get(s, enc);
    if (!c) return nullptr;
    const int i = SuiteIndex(s);
    const int e = enc ? 1 : 0;
    const size_t klen = SuiteKeyLen(s);
    const bool same = has_key[i][e] && CRYPTO_memcmp(keyed[i][e], key, klen) == 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, same ? nullptr : key, nonce, e) != 1) {
      has_key[i][e] = false;
      return nullptr;
    }
    if (!same) {
      std::memcpy(keyed[i][e], key, klen);
      has_key[i][e] = true;
    }
    return c;
  }
};
thread_local ThreadCiphers t_ciphers;

void Nonce(const Direction& d, uint8_t nonce[kIvLen]) {
  std::memcpy(nonce, d.iv, kIvLen);
  for (int i = 0; i < 8; ++i) nonce[kIvLen - 1 - i] ^= static_cast<uint8_t>(d.seq >> (8 * i));
}

}  // namespace

Suite SuiteFromId(uint32_t id) {
  switch (id) {
    case 0x03001301:
      return Suite::kAes128GcmSha256;
    case 0x03001302:
      return Suite::kAes256GcmSha384;
    case 0x03001303:
      return Suite::kChacha20Poly1305Sha256;
    default:
      return Suite::kNone;
  }
}

size_t SuiteHashLen(Suite s) { return s == Suite::kAes256GcmSha384 ? 48 : 32; }
size_t SuiteKeyLen(Suite s) { return s == Suite::kAes128GcmSha256 ? 16 : 32; }

bool HkdfExpandLabel(Suite s, const uint8_t* secret, size_t secret_len, const char* label,
                     const uint8_t* context, size_t context_len, uint8_t* out, size_t out_len) {
  // struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255>; }
  uint8_t info[2 + 1 + 255 + 1 + 255];
  size_t label_len = std::strlen(label);
  if (6 + label_len > 255 || context_len > 255 || out_len > 0xffff) return false;
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out_len >> 8);
  info[n++] = static_cast<uint8_t>(out_len);
  info[n++] = static_cast<uint8_t>(6 + label_len);
  std::memcpy(info + n, "tls13 ", 6);
  n += 6;
  std::memcpy(info + n, label, label_len);
  n += label_len;
  info[n++] = static_cast<uint8_t>(context_len);
  if (context_len) std::memcpy(info + n, context, context_len);
  n += context_len;

  // One HKDF context per thread and hash, digest and mode set once (a fetch by name costs more
  // than the derivation); the key is replaced right after use so no secret stays in it.
  EVP_KDF_CTX*& kctx = t_ciphers.hkdf_ctx[s == Suite::kAes256GcmSha384 ? 1 : 0];
  if (!kctx) {
    if (!t_ciphers.hkdf) t_ciphers.hkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    if (!t_ciphers.hkdf) return false;
    kctx = EVP_KDF_CTX_new(t_ciphers.hkdf);
    if (!kctx) return false;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM setup[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(DigestName(s)),
                                         0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_CTX_set_params(kctx, setup) != 1) {
      EVP_KDF_CTX_free(kctx);
      kctx = nullptr;
      return false;
    }
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret),
                                        secret_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end(),
  };
  bool ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
  uint8_t zero = 0;
  OSSL_PARAM wipe[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, &zero, 1),
      OSSL_PARAM_construct_end(),
  };
  EVP_KDF_CTX_set_params(kctx, wipe);  // OpenSSL clears and frees the previous key
  return ok;
}

void Direction::Wipe() {
  OPENSSL_cleanse(secret, sizeof(secret));
  OPENSSL_cleanse(key, sizeof(key));
  OPENSSL_cleanse(iv, sizeof(iv));
}

bool Direction::Set(Suite s, const uint8_t* traffic_secret, size_t len) {
  if (len != SuiteHashLen(s)) return false;
  uint8_t k[32];
  uint8_t v[kIvLen];
  if (!HkdfExpandLabel(s, traffic_secret, len, "key", nullptr, 0, k, SuiteKeyLen(s)) ||
      !HkdfExpandLabel(s, traffic_secret, len, "iv", nullptr, 0, v, kIvLen)) {
    return false;
  }
  uint8_t sec[kMaxSecret];
  std::memcpy(sec, traffic_secret, len);  // traffic_secret may be this->secret
  Wipe();
  std::memcpy(secret, sec, len);
  OPENSSL_cleanse(sec, sizeof(sec));
  std::memcpy(key, k, SuiteKeyLen(s));
  std::memcpy(iv, v, kIvLen);
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(v, sizeof(v));
  seq = 0;
  return true;
}

bool Direction::Update(Suite s) {
  uint8_t next[kMaxSecret];
  size_t len = SuiteHashLen(s);
  bool ok =
      HkdfExpandLabel(s, secret, len, "traffic upd", nullptr, 0, next, len) && Set(s, next, len);
  OPENSSL_cleanse(next, sizeof(next));
  return ok;
}

bool Seal(Suite s, Direction& d, uint8_t inner_type, const uint8_t* data, size_t len,
          std::string* out) {
  if (len > kMaxPlain || d.seq == UINT64_MAX) return false;
  const size_t body = len + 1 + kTagLen;
  uint8_t header[kHeaderLen] = {23, 3, 3, static_cast<uint8_t>(body >> 8),
                                static_cast<uint8_t>(body)};
  uint8_t nonce[kIvLen];
  Nonce(d, nonce);
  const size_t start = out->size();
  out->resize(start + kHeaderLen + body);
  uint8_t* p = reinterpret_cast<uint8_t*>(out->data()) + start;
  std::memcpy(p, header, kHeaderLen);
  int n = 0;
  int m = 0;
  EVP_CIPHER_CTX* ctx = t_ciphers.Keyed(s, true, d.key, nonce);
  bool ok =
      ctx != nullptr && EVP_EncryptUpdate(ctx, nullptr, &n, header, kHeaderLen) == 1 &&
      (len == 0 || EVP_EncryptUpdate(ctx, p + kHeaderLen, &n, data, static_cast<int>(len)) == 1) &&
      EVP_EncryptUpdate(ctx, p + kHeaderLen + len, &m, &inner_type, 1) == 1 &&
      EVP_EncryptFinal_ex(ctx, p + kHeaderLen + len + 1, &n) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagLen, p + kHeaderLen + len + 1) == 1;
  if (!ok) {
    out->resize(start);
    return false;
  }
  ++d.seq;
  return true;
}

long Open(Suite s, Direction& d, const uint8_t* record, size_t len, uint8_t* out,
          uint8_t* inner_type) {
  if (len < kHeaderLen + kTagLen + 1 || len > kHeaderLen + kMaxCipher || d.seq == UINT64_MAX) {
    return -1;
  }
  const size_t clen = len - kHeaderLen - kTagLen;
  uint8_t nonce[kIvLen];
  Nonce(d, nonce);
  int n = 0;
  EVP_CIPHER_CTX* ctx = t_ciphers.Keyed(s, false, d.key, nonce);
  bool ok = ctx != nullptr && EVP_DecryptUpdate(ctx, nullptr, &n, record, kHeaderLen) == 1 &&
            EVP_DecryptUpdate(ctx, out, &n, record + kHeaderLen, static_cast<int>(clen)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagLen,
                                const_cast<uint8_t*>(record + kHeaderLen + clen)) == 1 &&
            EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;  // the AEAD's constant-time tag check
  if (!ok) return -1;
  ++d.seq;
  size_t i = clen;
  while (i > 0 && out[i - 1] == 0) --i;  // padding
  if (i == 0 || i - 1 > kMaxPlain) return -1;
  *inner_type = out[i - 1];
  return static_cast<long>(i - 1);
}

}  // namespace cable::tls
