// The compact TLS 1.3 record layer (tls/record.h) against RFC 8448 §3 ("Simple 1-RTT Handshake"):
// HKDF-Expand-Label traffic keys / IVs, and the application-data and alert records of that trace
// sealed and opened byte for byte; then round trips, KeyUpdate and tampering for every suite.
#include "tls/record.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cable::tls {
namespace {

std::vector<uint8_t> Hex(const std::string& s) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char c : s) {
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  return out;
}

std::vector<uint8_t> Bytes(const uint8_t* p, size_t n) { return std::vector<uint8_t>(p, p + n); }

// RFC 8448 §3.
const char* kClientAppSecret =
    "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 "
    "a5";
const char* kServerAppSecret =
    "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 "
    "43";
const char* kClientRecord =
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab"
    "3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d"
    "ea e6 3a ee bb 21 69 49 15 e4";
const char* kServerRecord =  // sequence number 1 (a NewSessionTicket went first)
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b"
    "36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3"
    "32 54 0d d0 32 e1 67 c2 95 5d";
const char* kClientAlert =  // close_notify, client sequence number 1
    "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";

std::vector<uint8_t> Payload() {
  std::vector<uint8_t> p;
  for (int i = 0; i <= 0x31; ++i) p.push_back(static_cast<uint8_t>(i));
  return p;
}

TEST(HkdfExpandLabel, Rfc8448TrafficKeys) {
  const Suite s = Suite::kAes128GcmSha256;
  auto secret = Hex(kServerAppSecret);
  uint8_t key[16];
  uint8_t iv[12];
  ASSERT_TRUE(HkdfExpandLabel(s, secret.data(), secret.size(), "key", nullptr, 0, key, 16));
  ASSERT_TRUE(HkdfExpandLabel(s, secret.data(), secret.size(), "iv", nullptr, 0, iv, 12));
  EXPECT_EQ(Bytes(key, 16), Hex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"));
  EXPECT_EQ(Bytes(iv, 12), Hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84"));

  // The handshake traffic keys of the same trace (server, then client).
  secret =
      Hex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59"
          " d3 91 ad 38");
  ASSERT_TRUE(HkdfExpandLabel(s, secret.data(), secret.size(), "key", nullptr, 0, key, 16));
  ASSERT_TRUE(HkdfExpandLabel(s, secret.data(), secret.size(), "iv", nullptr, 0, iv, 12));
  EXPECT_EQ(Bytes(key, 16), Hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc"));
  EXPECT_EQ(Bytes(iv, 12), Hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"));

  Direction client;
  auto cs = Hex(kClientAppSecret);
  ASSERT_TRUE(client.Set(s, cs.data(), cs.size()));
  EXPECT_EQ(Bytes(client.key, 16), Hex("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"));
  EXPECT_EQ(Bytes(client.iv, 12), Hex("5b 78 92 3d ee 08 57 90 33 e5 23 d9"));
  EXPECT_EQ(Bytes(client.secret, 32), cs);
  EXPECT_EQ(client.seq, 0u);
}

TEST(Record, Rfc8448ApplicationDataAndAlert) {
  const Suite s = Suite::kAes128GcmSha256;
  auto cs = Hex(kClientAppSecret);
  auto ss = Hex(kServerAppSecret);
  // Sealing the client's first record gives the trace's bytes exactly.
  Direction client_tx;
  ASSERT_TRUE(client_tx.Set(s, cs.data(), cs.size()));
  std::string out;
  auto payload = Payload();
  ASSERT_TRUE(Seal(s, client_tx, 23, payload.data(), payload.size(), &out));
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.end()), Hex(kClientRecord));
  EXPECT_EQ(client_tx.seq, 1u);

  // The server's reader opens it, then the client's close_notify (sequence number 1).
  Direction server_rx;
  ASSERT_TRUE(server_rx.Set(s, cs.data(), cs.size()));
  uint8_t plain[kMaxCipher];
  uint8_t type = 0;
  auto rec = Hex(kClientRecord);
  ASSERT_EQ(Open(s, server_rx, rec.data(), rec.size(), plain, &type), 50);
  EXPECT_EQ(type, 23);
  EXPECT_EQ(Bytes(plain, 50), payload);
  rec = Hex(kClientAlert);
  ASSERT_EQ(Open(s, server_rx, rec.data(), rec.size(), plain, &type), 2);
  EXPECT_EQ(type, 21);
  EXPECT_EQ(Bytes(plain, 2), Hex("01 00"));

  // The server's record at sequence number 1.
  Direction client_rx;
  ASSERT_TRUE(client_rx.Set(s, ss.data(), ss.size()));
  client_rx.seq = 1;
  rec = Hex(kServerRecord);
  ASSERT_EQ(Open(s, client_rx, rec.data(), rec.size(), plain, &type), 50);
  EXPECT_EQ(type, 23);
  EXPECT_EQ(Bytes(plain, 50), payload);
  // ... and it does not open at any other sequence number.
  Direction wrong;
  ASSERT_TRUE(wrong.Set(s, ss.data(), ss.size()));
  EXPECT_EQ(Open(s, wrong, rec.data(), rec.size(), plain, &type), -1);
}

class AllSuites : public ::testing::TestWithParam<Suite> {};

TEST_P(AllSuites, RoundTripsKeyUpdateTamperingAndPadding) {
  const Suite s = GetParam();
  std::vector<uint8_t> secret(SuiteHashLen(s));
  for (size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<uint8_t>(i * 7 + 1);
  Direction tx;
  Direction rx;
  ASSERT_TRUE(tx.Set(s, secret.data(), secret.size()));
  ASSERT_TRUE(rx.Set(s, secret.data(), secret.size()));
  std::vector<uint8_t> plain(kMaxCipher);
  uint8_t type = 0;
  for (size_t len : {size_t{0}, size_t{1}, size_t{100}, kMaxPlain}) {
    std::vector<uint8_t> data(len);
    for (size_t i = 0; i < len; ++i) data[i] = static_cast<uint8_t>(i * 31);
    std::string out;
    ASSERT_TRUE(Seal(s, tx, 23, data.data(), len, &out));
    ASSERT_EQ(out.size(), kHeaderLen + len + 1 + kTagLen);
    EXPECT_EQ(static_cast<uint8_t>(out[0]), 23);
    ASSERT_EQ(
        Open(s, rx, reinterpret_cast<const uint8_t*>(out.data()), out.size(), plain.data(), &type),
        static_cast<long>(len));
    EXPECT_EQ(type, 23);
    EXPECT_EQ(Bytes(plain.data(), len), data);
  }
  EXPECT_EQ(tx.seq, 4u);
  EXPECT_EQ(rx.seq, 4u);
  // Both sides update: the new keys agree with each other and differ from the old ones.
  std::vector<uint8_t> old_key(tx.key, tx.key + SuiteKeyLen(s));
  ASSERT_TRUE(tx.Update(s));
  ASSERT_TRUE(rx.Update(s));
  EXPECT_EQ(tx.seq, 0u);
  EXPECT_NE(Bytes(tx.key, SuiteKeyLen(s)), old_key);
  std::string out;
  const uint8_t msg[] = {'h', 'i'};
  ASSERT_TRUE(Seal(s, tx, 23, msg, 2, &out));
  ASSERT_EQ(
      Open(s, rx, reinterpret_cast<const uint8_t*>(out.data()), out.size(), plain.data(), &type),
      2);
  // A flipped bit in the ciphertext, the tag or the header fails the tag check.
  for (size_t pos : {kHeaderLen, out.size() - 1, size_t{2}}) {
    std::string bad;
    Direction t2 = {};
    Direction r2 = {};
    ASSERT_TRUE(t2.Set(s, secret.data(), secret.size()));
    ASSERT_TRUE(r2.Set(s, secret.data(), secret.size()));
    ASSERT_TRUE(Seal(s, t2, 23, msg, 2, &bad));
    bad[pos] ^= 0x01;
    EXPECT_EQ(
        Open(s, r2, reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), plain.data(), &type),
        -1)
        << pos;
  }
  // Padding (zeros after the type byte) is stripped: seal "hi" || 22 || 00 00 00 as raw content.
  Direction t3;
  Direction r3;
  ASSERT_TRUE(t3.Set(s, secret.data(), secret.size()));
  ASSERT_TRUE(r3.Set(s, secret.data(), secret.size()));
  const uint8_t padded[] = {'h', 'i', 22, 0, 0};
  std::string rec;
  ASSERT_TRUE(Seal(s, t3, 0, padded, sizeof(padded), &rec));  // inner "type" 0 is more padding
  ASSERT_EQ(
      Open(s, r3, reinterpret_cast<const uint8_t*>(rec.data()), rec.size(), plain.data(), &type),
      2);
  EXPECT_EQ(type, 22);
  // All zeros (no content type) is refused.
  Direction t4;
  Direction r4;
  ASSERT_TRUE(t4.Set(s, secret.data(), secret.size()));
  ASSERT_TRUE(r4.Set(s, secret.data(), secret.size()));
  const uint8_t zeros[] = {0, 0};
  rec.clear();
  ASSERT_TRUE(Seal(s, t4, 0, zeros, sizeof(zeros), &rec));
  EXPECT_EQ(
      Open(s, r4, reinterpret_cast<const uint8_t*>(rec.data()), rec.size(), plain.data(), &type),
      -1);
}

INSTANTIATE_TEST_SUITE_P(Tls13, AllSuites,
                         ::testing::Values(Suite::kAes128GcmSha256, Suite::kAes256GcmSha384,
                                           Suite::kChacha20Poly1305Sha256));

TEST(Suites, FromOpenSslIds) {
  EXPECT_EQ(SuiteFromId(0x03001301), Suite::kAes128GcmSha256);
  EXPECT_EQ(SuiteFromId(0x03001302), Suite::kAes256GcmSha384);
  EXPECT_EQ(SuiteFromId(0x03001303), Suite::kChacha20Poly1305Sha256);
  EXPECT_EQ(SuiteFromId(0x03001304), Suite::kNone);  // AES-128-CCM: stays on OpenSSL
  EXPECT_EQ(SuiteHashLen(Suite::kAes256GcmSha384), 48u);
  EXPECT_EQ(SuiteKeyLen(Suite::kAes128GcmSha256), 16u);
}

}  // namespace
}  // namespace cable::tls
