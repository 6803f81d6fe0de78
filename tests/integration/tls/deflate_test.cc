// permessage-deflate (--enable_ws_compression) through the real binary: negotiation, compressed
// client frames, compressed broadcasts that decompress to exactly the plain frame (one shared
// compressed frame for every compressing subscriber), the compression bomb, corrupt data, and
// compression over TLS.
#include <gtest/gtest.h>
#include <zlib.h>

#include <memory>
#include <string>

#include "test_support.h"
#include "tests/integration/tls/tls_util.h"

namespace cable::ittls {
namespace {

using namespace std::chrono_literals;
using cable::test::HttpRequest;
using cable::test::HttpsRequest;
using cable::test::ServerProcess;
using cable::test::WsClient;
using cable::test::WsFrame;

const std::map<std::string, std::string> kOffer = {
    {"Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"}};
constexpr const char* kAnswer =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

// Raw deflate of one message without the trailing 00 00 ff ff (RFC 7692 §7.2.1).
std::string Deflate(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, in.size()) + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_SYNC_FLUSH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  if (out.size() >= 4 && out.compare(out.size() - 4, 4, std::string("\0\0\xff\xff", 4)) == 0) {
    out.resize(out.size() - 4);
  }
  return out;
}

// Inverse of Deflate (appends the tail); "<corrupt>" on error.
std::string Inflate(const std::string& in) {
  std::string data = in + std::string("\0\0\xff\xff", 4);
  z_stream z{};
  inflateInit2(&z, -15);
  z.next_in = reinterpret_cast<Bytef*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[65536];
  for (int i = 0; i < 100000; ++i) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    int rc = inflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_STREAM_END || (z.avail_in == 0 && z.avail_out != 0)) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      inflateEnd(&z);
      return "<corrupt>";
    }
  }
  inflateEnd(&z);
  return out;
}

// The next data message, decompressed when it came compressed (pings skipped).
struct Message {
  bool compressed = false;
  std::string raw;   // the payload as it came
  std::string text;  // decompressed
};
Message NextData(WsClient& c) {
  for (int i = 0; i < 1000; ++i) {
    WsFrame f = c.Next(10s);
    if (f.opcode == -1 || f.opcode == 8) return {};
    if (f.opcode != 1) continue;
    Message m{f.rsv1, f.payload, f.rsv1 ? Inflate(f.payload) : f.payload};
    if (m.text.rfind("{\"type\":\"ping\"", 0) == 0) continue;
    return m;
  }
  return {};
}

class DeflateTest : public ::testing::Test {
 protected:
  // A clean exit (0) on SIGTERM, and no sanitizer report in its log (ASan/UBSan builds).
  void TearDown() override {
    if (!server_.running()) return;
    EXPECT_EQ(server_.Stop(), 0) << server_.Log();
    std::string log = server_.Log();
    EXPECT_EQ(log.find("Sanitizer"), std::string::npos) << log;
    EXPECT_EQ(log.find("runtime error"), std::string::npos) << log;
  }

  void StartServer(std::vector<std::string> extra = {}, bool tls = false) {
    std::vector<std::string> args = PublicArgs();
    args.push_back("--enable_ws_compression");
    if (tls) {
      ASSERT_TRUE(certs_.ok()) << certs_.error();
      args.insert(args.end(), {"--ssl_cert", certs_.cert(), "--ssl_key", certs_.key()});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    tls_ = tls;
    server_.set_tls(tls);
    ASSERT_TRUE(server_.Start(args)) << server_.Log();
  }

  // Connected (welcome consumed); offers permessage-deflate when `offer`.
  std::unique_ptr<WsClient> Client(bool offer) {
    auto c = std::make_unique<WsClient>();
    c->set_tls(tls_);
    EXPECT_EQ(c->Connect(server_.port(), "/cable", offer ? kOffer : decltype(kOffer){}), 101);
    Message welcome = NextData(*c);
    EXPECT_NE(welcome.text.find("\"type\":\"welcome\""), std::string::npos) << welcome.text;
    // Compressed only on a compressing connection, and only when that is smaller (a short welcome
    // usually is not).
    EXPECT_TRUE(offer || !welcome.compressed);
    EXPECT_TRUE(!welcome.compressed || welcome.raw.size() < welcome.text.size());
    return c;
  }

  void SubscribeTo(WsClient& c, const std::string& stream, bool compressed) {
    std::string cmd = SubscribeCommand(PubsubId(stream));
    ASSERT_TRUE(compressed ? c.SendFrame(1, Deflate(cmd), true, true, true) : c.SendText(cmd));
    Message m = NextData(c);
    EXPECT_TRUE(m.text == "{\"type\":\"confirm_subscription\",\"identifier\":" +
                              cable::test::JsonString(PubsubId(stream)) + "}")
        << m.text.substr(0, 200);
  }

  int Broadcast(const std::string& body) {
    std::map<std::string, std::string> h = {
        {"Authorization", std::string("Bearer ") + kBroadcastKey}};
    return (tls_ ? HttpsRequest : HttpRequest)(server_.port(), "POST", "/_broadcast", h, body)
        .status;
  }

  CertDir certs_;
  ServerProcess server_;
  bool tls_ = false;
};

TEST_F(DeflateTest, NegotiatedOnlyWhenOfferedAndEnabled) {
  StartServer();
  WsClient offered;
  ASSERT_EQ(offered.Connect(server_.port(), "/cable", kOffer), 101);
  EXPECT_EQ(offered.response_headers().at("sec-websocket-extensions"), kAnswer);
  WsClient plain;
  ASSERT_EQ(plain.Connect(server_.port()), 101);
  EXPECT_EQ(plain.response_headers().count("sec-websocket-extensions"), 0u);
  // Other extensions offered alongside: only permessage-deflate is taken.
  WsClient mixed;
  ASSERT_EQ(mixed.Connect(server_.port(), "/cable",
                          {{"Sec-WebSocket-Extensions", "x-webkit-foo, permessage-deflate"}}),
            101);
  EXPECT_EQ(mixed.response_headers().at("sec-websocket-extensions"), kAnswer);
}

TEST(DeflateOffTest, FlagOffAnswersNoExtensionAndRejectsRsv1) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(PublicArgs())) << server.Log();
  WsClient c;
  ASSERT_EQ(c.Connect(server.port(), "/cable", kOffer), 101);
  EXPECT_EQ(c.response_headers().count("sec-websocket-extensions"), 0u);
  ASSERT_TRUE(c.WaitFor("welcome").has_value());
  ASSERT_TRUE(c.SendFrame(1, Deflate(SubscribeCommand(PubsubId("x"))), true, true, true));
  EXPECT_EQ(c.WaitClose(10s).close_code(), 1002);
}

TEST_F(DeflateTest, CompressedAndPlainClientFrames) {
  StartServer();
  auto c = Client(true);
  // A compressed subscribe is understood; replies come compressed.
  SubscribeTo(*c, "dz_chat", true);
  // Uncompressed frames stay allowed on a compressing connection.
  ASSERT_TRUE(c->SendText(SubscribeCommand(PubsubId("dz_plain"))));
  Message m = NextData(*c);
  EXPECT_TRUE(!m.compressed || m.raw.size() < m.text.size()) << "compressed only when smaller";
  EXPECT_NE(m.text.find("confirm_subscription"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("dz_plain"), std::string::npos) << m.text;
  // A compressed message in fragments (RSV1 on the first frame only).
  std::string z = Deflate(SubscribeCommand(PubsubId("dz_chat2")));
  size_t half = z.size() / 2;
  ASSERT_TRUE(c->SendFrame(1, z.substr(0, half), false, true, true));
  ASSERT_TRUE(c->SendFrame(0, z.substr(half), true, true, false));
  m = NextData(*c);
  EXPECT_NE(m.text.find("confirm_subscription"), std::string::npos) << m.text;
}

TEST_F(DeflateTest, BroadcastDecompressesToTheExactFrameAndIsSharedOnce) {
  StartServer();
  auto z1 = Client(true);
  auto z2 = Client(true);
  auto plain = Client(false);
  SubscribeTo(*z1, "dz_news", true);
  SubscribeTo(*z2, "dz_news", false);
  SubscribeTo(*plain, "dz_news", false);
  std::string data = "{\"text\":\"" + std::string(3000, 'a') + "\",\"n\":42}";
  ASSERT_EQ(Broadcast(Publication("dz_news", data)), 201);
  Message a = NextData(*z1);
  Message b = NextData(*z2);
  Message p = NextData(*plain);
  EXPECT_FALSE(p.compressed);
  EXPECT_EQ(p.text, Delivered(PubsubId("dz_news"), data));
  ASSERT_TRUE(a.compressed);
  ASSERT_TRUE(b.compressed);
  EXPECT_EQ(a.text, p.text);
  EXPECT_EQ(b.text, p.text);
  EXPECT_EQ(a.raw, b.raw);  // the same compressed bytes: built once, shared
  EXPECT_LT(a.raw.size(), p.raw.size() / 10);
}

TEST_F(DeflateTest, CompressionBombClosesLikeAnOversizedMessage) {
  StartServer({"--max_message_size", "4096"});
  // Plain oversized message: the reference behaviour.
  auto plain = Client(true);
  ASSERT_TRUE(plain->SendText(std::string(5000, ' ')));
  WsFrame plain_close = plain->WaitClose(10s);
  EXPECT_EQ(plain_close.close_code(), 1009);
  EXPECT_TRUE(plain->WaitEof(10s));
  // 8 MB of zeros deflate to ~8 KB... keep the compressed size under the limit: 1 MB → ~1 KB.
  std::string bomb = Deflate(std::string(1 << 20, '0'));
  ASSERT_LT(bomb.size(), 4096u);
  auto c = Client(true);
  ASSERT_TRUE(c->SendFrame(1, bomb, true, true, true));
  WsFrame close = c->WaitClose(10s);
  EXPECT_EQ(close.close_code(), 1009);
  EXPECT_EQ(close.payload, plain_close.payload);
  EXPECT_TRUE(c->WaitEof(10s));
  // Just under the limit once inflated is fine.
  auto ok = Client(true);
  SubscribeTo(*ok, "dz_" + std::string(3000, 'y'), true);
}

TEST_F(DeflateTest, CorruptDataOrBadUtf8Closes1007) {
  StartServer();
  auto c = Client(true);
  ASSERT_TRUE(c->SendFrame(1, std::string("\xff\xff\xff\xff\xff\xff", 6), true, true, true));
  EXPECT_EQ(c->WaitClose(10s).close_code(), 1007);
  auto u = Client(true);
  ASSERT_TRUE(u->SendFrame(1, Deflate("{\"x\":\"\xc3\x28\"}"), true, true, true));
  EXPECT_EQ(u->WaitClose(10s).close_code(), 1007);
  // RSV1 on a control frame is a protocol error.
  auto p = Client(true);
  ASSERT_TRUE(p->SendFrame(9, "", true, true, true));
  EXPECT_EQ(p->WaitClose(10s).close_code(), 1002);
}

TEST_F(DeflateTest, CompressionOverTls) {
  StartServer({}, true);
  auto z = Client(true);
  auto plain = Client(false);
  SubscribeTo(*z, "dz_tls", true);
  SubscribeTo(*plain, "dz_tls", false);
  std::string data = "{\"secure\":\"" + std::string(500, 's') + "\"}";
  ASSERT_EQ(Broadcast(Publication("dz_tls", data)), 201);
  Message a = NextData(*z);
  EXPECT_TRUE(a.compressed);
  EXPECT_EQ(a.text, Delivered(PubsubId("dz_tls"), data));
  EXPECT_EQ(NextData(*plain).text, Delivered(PubsubId("dz_tls"), data));
}

}  // namespace
}  // namespace cable::ittls
