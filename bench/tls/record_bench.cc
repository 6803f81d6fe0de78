// Cost of sealing one TLS 1.3 record with the compact record layer (tls/record.h), which keeps no
// cipher context per connection: one per thread and suite, keyed again whenever the record is for
// another connection than the previous one (fan-out: every record). Compared
// with the alternative of one EVP_CIPHER_CTX kept keyed per connection and direction (only the
// nonce changes per record), which would cost ~1 KB of heap per direction (bench/README.md, TLS).
//
//   build/bench/tls/record_bench [RECORDS=200000]
#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tls/record.h"

namespace {

using cable::tls::Direction;
using cable::tls::Suite;

double NsPer(std::chrono::steady_clock::time_point t0, int n) {
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
         n;
}

// The alternative: a context keyed once; per record only the nonce is set.
double KeptContext(const char* cipher_name, const Direction& d, size_t len, int n) {
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, cipher_name, nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, cipher, nullptr, d.key, d.iv);
  std::vector<uint8_t> in(len + 1, 'x');
  std::vector<uint8_t> out(len + 64);
  uint8_t hdr[5] = {23, 3, 3, 0, 0};
  uint8_t nonce[12];
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    std::memcpy(nonce, d.iv, 12);
    nonce[11] ^= static_cast<uint8_t>(i);
    int k = 0;
    EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce);
    EVP_EncryptUpdate(ctx, nullptr, &k, hdr, 5);
    EVP_EncryptUpdate(ctx, out.data(), &k, in.data(), static_cast<int>(in.size()));
    EVP_EncryptFinal_ex(ctx, out.data() + k, &k);
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out.data() + len + 1);
  }
  double ns = NsPer(t0, n);
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200000;
  struct {
    Suite suite;
    const char* name;
    const char* evp;
  } suites[] = {
      {Suite::kAes128GcmSha256, "TLS_AES_128_GCM_SHA256", "AES-128-GCM"},
      {Suite::kAes256GcmSha384, "TLS_AES_256_GCM_SHA384", "AES-256-GCM"},
      {Suite::kChacha20Poly1305Sha256, "TLS_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305"}};
  std::printf(
      "ns per sealed record: [compact, one connection: the thread's context keeps its key] "
      "[compact, two connections alternating: a key schedule per record] [a context kept keyed "
      "per connection and direction]\n");
  for (const auto& s : suites) {
    std::vector<uint8_t> secret(cable::tls::SuiteHashLen(s.suite), 7);
    std::vector<uint8_t> secret2(secret.size(), 9);
    Direction d;
    Direction d2;
    if (!d.Set(s.suite, secret.data(), secret.size()) ||
        !d2.Set(s.suite, secret2.data(), secret2.size())) {
      return 1;
    }
    for (size_t len : {size_t{100}, size_t{1000}, size_t{16384}}) {
      std::vector<uint8_t> data(len, 'x');
      std::string out;
      out.reserve(len + 64);
      double ns[2];
      for (int alternate = 0; alternate < 2; ++alternate) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) {
          out.clear();
          Direction& dir = alternate && (i & 1) ? d2 : d;
          if (!cable::tls::Seal(s.suite, dir, 23, data.data(), len, &out)) return 1;
        }
        ns[alternate] = NsPer(t0, n);
      }
      double kept = KeptContext(s.evp, d, len, n);
      std::printf("  %-30s %6zu B: %8.0f %8.0f %8.0f\n", s.name, len, ns[0], ns[1], kept);
    }
  }
  return 0;
}
