// Live upgrade of a compact TLS 1.3 session (tls::CompactState): a session built from exported
// state goes on with the peer's record stream at the same sequence numbers both ways, exports the
// same state again, and unusable state (unknown suite, wrong secret length) gives no session.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "tls/record.h"
#include "tls/tls.h"

namespace cable::tls {
namespace {

void Fill(uint8_t* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(seed + i * 13);
}

class CompactStateTest : public ::testing::TestWithParam<Suite> {};

TEST_P(CompactStateTest, ImportedSessionContinuesTheStreamBothWays) {
  const Suite s = GetParam();
  const size_t len = SuiteHashLen(s);
  CompactState st;
  st.suite = s;
  st.secret_len = static_cast<uint8_t>(len);
  Fill(st.rx_secret, len, 1);  // client → server
  Fill(st.tx_secret, len, 2);  // server → client
  st.rx_seq = 7;
  st.tx_seq = 11;
  Session server(st);
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE(server.compact());
  ASSERT_TRUE(server.handshake_done());
  // The client's side: its sending direction is the server's receiving one, and vice versa.
  Direction client_tx, client_rx;
  ASSERT_TRUE(client_tx.Set(s, st.rx_secret, len));
  ASSERT_TRUE(client_rx.Set(s, st.tx_secret, len));
  client_tx.seq = 7;
  client_rx.seq = 11;
  std::string record;
  const std::string hello = "hello after the upgrade";
  ASSERT_TRUE(Seal(s, client_tx, 23, reinterpret_cast<const uint8_t*>(hello.data()), hello.size(),
                   &record));
  server.Feed(record.data(), record.size());
  char buf[kMaxCipher];
  Session::Status status;
  size_t n = server.Read(buf, sizeof(buf), &status);
  ASSERT_EQ(std::string(buf, n), hello);
  server.Feed(nullptr, 0);
  const std::string reply = "reply";
  ASSERT_TRUE(server.Write(reply.data(), reply.size()));
  std::string out(server.PendingOutput(), '\0');
  ASSERT_EQ(server.TakeOutput(out.data(), out.size()), out.size());
  uint8_t plain[kMaxCipher];
  uint8_t type = 0;
  long got =
      Open(s, client_rx, reinterpret_cast<const uint8_t*>(out.data()), out.size(), plain, &type);
  ASSERT_EQ(got, static_cast<long>(reply.size()));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(plain), reply.size()), reply);
  // Exported again (as a second upgrade would): sequence numbers moved on by one each.
  CompactState again;
  ASSERT_TRUE(server.ExportCompact(&again));
  EXPECT_EQ(again.suite, s);
  EXPECT_EQ(again.secret_len, len);
  EXPECT_EQ(again.rx_seq, 8u);
  EXPECT_EQ(again.tx_seq, 12u);
  EXPECT_EQ(std::memcmp(again.rx_secret, st.rx_secret, len), 0);
  EXPECT_EQ(std::memcmp(again.tx_secret, st.tx_secret, len), 0);
  // Output waiting to be sent: not exportable (the bytes would be lost or sent twice).
  ASSERT_TRUE(server.Write(reply.data(), reply.size()));
  EXPECT_FALSE(server.ExportCompact(&again));
}

INSTANTIATE_TEST_SUITE_P(AllSuites, CompactStateTest,
                         ::testing::Values(Suite::kAes128GcmSha256, Suite::kAes256GcmSha384,
                                           Suite::kChacha20Poly1305Sha256));

TEST(CompactState, UnusableStateGivesNoSession) {
  CompactState unknown;
  unknown.suite = static_cast<Suite>(9);
  unknown.secret_len = 32;
  EXPECT_FALSE(Session(unknown).ok());
  CompactState none;
  EXPECT_FALSE(Session(none).ok());
  CompactState short_secret;
  short_secret.suite = Suite::kAes256GcmSha384;  // needs 48 bytes
  short_secret.secret_len = 32;
  EXPECT_FALSE(Session(short_secret).ok());
}

}  // namespace
}  // namespace cable::tls
