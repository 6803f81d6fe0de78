// Unit tests of ringcable-load's pieces: histogram, WebSocket client framing and upgrade check,
// Action Cable frame classification, worker <-> parent messages and option parsing.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "histogram.h"
#include "ipc.h"
#include "options.h"
#include "publisher.h"
#include "worker.h"
#include "ws.h"
#include "ws/deflate.h"

namespace cable::load {
namespace {

// ---- Histogram ----

TEST(Histogram, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 50u);
  EXPECT_EQ(h.ValueAtQuantile(0.9), 90u);
  EXPECT_EQ(h.ValueAtQuantile(0.99), 99u);
  EXPECT_EQ(h.ValueAtQuantile(1.0), 100u);
  EXPECT_EQ(h.ValueAtQuantile(0.0), 1u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 100u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, LargeValuesWithinOneSixtyFourth) {
  Histogram h;
  for (uint64_t v = 1; v <= 100000; ++v) h.Record(v * 1000);  // 1 us .. 100 ms in ns
  struct Case {
    double q;
    uint64_t exact;
  } cases[] = {{0.5, 50000000}, {0.9, 90000000}, {0.99, 99000000}, {0.999, 99900000}};
  for (const auto& c : cases) {
    uint64_t got = h.ValueAtQuantile(c.q);
    EXPECT_GE(got, c.exact) << c.q;
    EXPECT_LE(got, c.exact + c.exact / 64) << c.q;
  }
  EXPECT_EQ(h.ValueAtQuantile(1.0), 100000000u);
  EXPECT_EQ(h.max(), 100000000u);
  EXPECT_EQ(h.min(), 1000u);
}

TEST(Histogram, BucketsCoverTheirValues) {
  std::vector<uint64_t> values = {0,
                                  1,
                                  127,
                                  128,
                                  129,
                                  255,
                                  256,
                                  1000,
                                  123456789,
                                  uint64_t{1} << 40,
                                  (uint64_t{1} << 62) + 12345,
                                  UINT64_MAX};
  for (uint64_t v : values) {
    size_t i = Histogram::BucketIndex(v);
    ASSERT_LT(i, Histogram::kBuckets) << v;
    EXPECT_LE(Histogram::BucketLowest(i), v) << v;
    EXPECT_GE(Histogram::BucketHighest(i), v) << v;
    EXPECT_LE(Histogram::BucketHighest(i) - Histogram::BucketLowest(i), v / 64) << v;
  }
  // Consecutive buckets tile the value range without gaps.
  for (size_t i = 1; i < Histogram::kBuckets; ++i) {
    ASSERT_EQ(Histogram::BucketLowest(i), Histogram::BucketHighest(i - 1) + 1) << i;
  }
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  Histogram all, a, b;
  for (uint64_t v = 1; v <= 5000; ++v) {
    all.Record(v * 777);
    (v % 3 ? a : b).Record(v * 777);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double q : {0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    EXPECT_EQ(a.ValueAtQuantile(q), all.ValueAtQuantile(q)) << q;
  }
}

TEST(Histogram, MergeKeepsMinAndMaxOfBoth) {
  Histogram a, b;
  a.Record(500);
  b.Record(7);
  b.Record(90000);
  a.Merge(b);
  EXPECT_EQ(a.min(), 7u);
  EXPECT_EQ(a.max(), 90000u);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.ValueAtQuantile(0.5), Histogram::BucketHighest(Histogram::BucketIndex(500)));
}

TEST(Histogram, SerializationRoundTrips) {
  Histogram h;
  h.Record(3);
  h.Record(1234567, 10);
  std::string bytes;
  h.AppendTo(&bytes);
  bytes += "tail";
  std::string_view in(bytes);
  Histogram back;
  ASSERT_TRUE(back.ReadFrom(&in));
  EXPECT_EQ(in, "tail");
  EXPECT_EQ(back.count(), 11u);
  EXPECT_EQ(back.min(), 3u);
  EXPECT_EQ(back.max(), 1234567u);
  EXPECT_EQ(back.ValueAtQuantile(0.5), h.ValueAtQuantile(0.5));
}

TEST(Histogram, RejectsMalformedBytes) {
  Histogram h;
  h.Record(1000, 2);
  std::string bytes;
  h.AppendTo(&bytes);
  Histogram back;
  std::string_view truncated(bytes.data(), bytes.size() - 1);
  EXPECT_FALSE(back.ReadFrom(&truncated));
  std::string wrong_count = bytes;
  wrong_count[0] = 5;  // count no longer matches the buckets
  std::string_view in(wrong_count);
  EXPECT_FALSE(back.ReadFrom(&in));
  std::string bad_index = bytes;
  bad_index[47] = '\x7f';  // high byte of the first bucket index -> out of range
  in = bad_index;
  EXPECT_FALSE(back.ReadFrom(&in));
  EXPECT_EQ(back.count(), 0u);
}

// ---- WebSocket frames ----

std::string ServerFrame(uint8_t first, std::string_view payload) {
  std::string f(1, static_cast<char>(first));
  size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((uint64_t{n} >> (8 * i)) & 0xff);
  }
  return f + std::string(payload);
}

std::vector<std::string> Drain(FrameReader& r) {
  std::vector<std::string> out;
  WsMessage m;
  for (;;) {
    auto next = r.Next(&m);
    EXPECT_TRUE(next.ok());
    if (!next.ok() || !next.value()) return out;
    out.push_back(std::to_string(static_cast<int>(m.opcode)) + ":" + std::string(m.payload));
  }
}

TEST(FrameReader, AnySplitOfSeveralFrames) {
  std::string big(300, 'b');
  std::string huge(70000, 'h');
  std::string stream = ServerFrame(0x81, "hello") + ServerFrame(0x81, big) +
                       ServerFrame(0x89, "pi") + ServerFrame(0x82, huge);
  std::vector<std::string> want = {"1:hello", "1:" + big, "9:pi", "2:" + huge};
  for (size_t split : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{8}, size_t{300},
                       size_t{312}, size_t{320}, stream.size() - 1}) {
    FrameReader r;
    r.Feed(std::string_view(stream).substr(0, split));
    std::vector<std::string> got = Drain(r);
    r.Feed(std::string_view(stream).substr(split));
    for (auto& m : Drain(r)) got.push_back(m);
    EXPECT_EQ(got, want) << "split at " << split;
    EXPECT_EQ(r.buffered(), 0u);
  }
}

TEST(FrameReader, ByteByByte) {
  std::string stream =
      ServerFrame(0x81, "{\"type\":\"welcome\"}") + ServerFrame(0x81, std::string(200, 'z'));
  FrameReader r;
  std::vector<std::string> got;
  for (char ch : stream) {
    r.Feed(std::string_view(&ch, 1));
    for (auto& m : Drain(r)) got.push_back(m);
  }
  EXPECT_EQ(got,
            (std::vector<std::string>{"1:{\"type\":\"welcome\"}", "1:" + std::string(200, 'z')}));
}

TEST(FrameReader, ReassemblesFragmentsAroundControlFrames) {
  std::string stream = ServerFrame(0x01, "ab") + ServerFrame(0x89, "p") + ServerFrame(0x00, "cd") +
                       ServerFrame(0x80, "ef") + ServerFrame(0x81, "next");
  for (size_t split = 1; split < stream.size(); ++split) {
    FrameReader r;
    r.Feed(std::string_view(stream).substr(0, split));
    std::vector<std::string> got = Drain(r);
    r.Feed(std::string_view(stream).substr(split));
    for (auto& m : Drain(r)) got.push_back(m);
    EXPECT_EQ(got, (std::vector<std::string>{"9:p", "1:abcdef", "1:next"})) << split;
  }
}

TEST(FrameReader, UnmasksMaskedFrames) {
  std::string frame;
  AppendClientFrame(&frame, Opcode::kText, "masked payload", 0xa1b2c3d4);
  FrameReader r;
  r.Feed(frame);
  EXPECT_EQ(Drain(r), (std::vector<std::string>{"1:masked payload"}));
}

FrameError ErrorOf(std::string bytes, size_t max = size_t{16} << 20) {
  FrameReader r(max);
  r.Feed(bytes);
  WsMessage m;
  for (int i = 0; i < 10; ++i) {
    auto next = r.Next(&m);
    if (!next.ok()) return next.error();
    if (!next.value()) break;
  }
  ADD_FAILURE() << "no error";
  return FrameError::kTooLarge;
}

TEST(FrameReader, Errors) {
  EXPECT_EQ(ErrorOf(ServerFrame(0xc1, "x")), FrameError::kReservedBits);
  EXPECT_EQ(ErrorOf(ServerFrame(0x83, "x")), FrameError::kBadOpcode);
  EXPECT_EQ(ErrorOf(ServerFrame(0x8b, "x")), FrameError::kBadOpcode);
  EXPECT_EQ(ErrorOf(ServerFrame(0x09, "x")), FrameError::kFragmentedControl);
  EXPECT_EQ(ErrorOf(ServerFrame(0x89, std::string(126, 'p'))), FrameError::kControlTooLong);
  EXPECT_EQ(ErrorOf(ServerFrame(0x80, "x")), FrameError::kUnexpectedContinuation);
  EXPECT_EQ(ErrorOf(ServerFrame(0x01, "a") + ServerFrame(0x81, "b")),
            FrameError::kExpectedContinuation);
  EXPECT_EQ(ErrorOf(ServerFrame(0x81, std::string(11, 'a')), 10), FrameError::kTooLarge);
  EXPECT_EQ(ErrorOf(ServerFrame(0x01, "abcdef") + ServerFrame(0x80, "ghijk"), 10),
            FrameError::kTooLarge);
  EXPECT_STREQ(FrameErrorName(FrameError::kReservedBits), "reserved bits set");
}

TEST(FrameReader, PermessageDeflate) {
  std::string text = std::string(3000, 'z') + "{\"type\":\"ping\"}";
  std::string z;
  cable::ws::DeflateMessage(text, &z);
  FrameReader r;
  r.set_deflate(true);
  // Whole, then fragmented (RSV1 on the first frame only), then a plain one.
  r.Feed(ServerFrame(0xc1, z) + ServerFrame(0x41, z.substr(0, 3)) + ServerFrame(0x80, z.substr(3)) +
         ServerFrame(0x81, "plain"));
  EXPECT_EQ(Drain(r), (std::vector<std::string>{"1:" + text, "1:" + text, "1:plain"}));
  EXPECT_EQ(r.compressed_messages(), 2u);
  FrameReader small(100);
  small.set_deflate(true);
  EXPECT_EQ(ErrorOf(ServerFrame(0xc1, z)), FrameError::kReservedBits) << "not negotiated";
  small.Feed(ServerFrame(0xc1, z));
  WsMessage m;
  auto next = small.Next(&m);
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error(), FrameError::kTooLarge);
  FrameReader bad;
  bad.set_deflate(true);
  bad.Feed(ServerFrame(0xc1, "\xff\xff\xff"));
  next = bad.Next(&m);
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error(), FrameError::kCorrupt);
  EXPECT_NE(UpgradeRequest("h:1", "/cable", "K", true)
                .find("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"),
            std::string::npos);
}

TEST(FrameReader, TooLargeIsReportedFromTheHeaderAlone) {
  std::string header = ServerFrame(0x82, std::string(70000, 'x')).substr(0, 10);
  FrameReader r(65536);
  r.Feed(header);
  WsMessage m;
  auto next = r.Next(&m);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error(), FrameError::kTooLarge);
}

TEST(ClientFrame, EncodesLengthsAndMask) {
  for (size_t n : {size_t{0}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}}) {
    std::string payload(n, 'q');
    std::string frame;
    AppendClientFrame(&frame, Opcode::kBinary, payload, 0x01020304);
    EXPECT_EQ(static_cast<uint8_t>(frame[0]), 0x82);
    EXPECT_TRUE(static_cast<uint8_t>(frame[1]) & 0x80) << "mask bit";
    size_t header = n < 126 ? 6 : n <= 0xffff ? 8 : 14;
    EXPECT_EQ(frame.size(), header + n);
    FrameReader r(size_t{1} << 20);
    r.Feed(frame);
    WsMessage m;
    auto next = r.Next(&m);
    ASSERT_TRUE(next.ok() && next.value());
    EXPECT_EQ(m.payload, payload);
  }
}

TEST(Upgrade, AcceptMatchesRfcExample) {
  EXPECT_EQ(WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(Upgrade, RequestCarriesSubprotocolAndKey) {
  std::string req = UpgradeRequest("127.0.0.1:8080", "/cable?x=1", "KEY");
  EXPECT_EQ(req.rfind("GET /cable?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n", 0), 0u);
  EXPECT_NE(req.find("Sec-WebSocket-Protocol: actioncable-v1-json\r\n"), std::string::npos);
  EXPECT_NE(req.find("Sec-WebSocket-Key: KEY\r\n"), std::string::npos);
  EXPECT_EQ(req.substr(req.size() - 4), "\r\n\r\n");
  std::string ext = UpgradeRequest("127.0.0.1:8080", "/cable", "KEY", false, true);
  EXPECT_NE(ext.find("Sec-WebSocket-Protocol: actioncable-v1-ext-json\r\n"), std::string::npos);
}

TEST(Upgrade, ParsesResponse) {
  std::string accept = WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ==");
  std::string ok =
      "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      accept + "\r\n\r\n";
  int status = 0;
  for (size_t n = 0; n < ok.size(); ++n) {
    auto r = ParseUpgradeResponse(ok.substr(0, n), accept, &status);
    ASSERT_TRUE(r.ok()) << n;
    EXPECT_EQ(r.value(), 0u) << n;
  }
  auto r = ParseUpgradeResponse(ok + "\x81\x02hi", accept, &status);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), ok.size());
  EXPECT_EQ(status, 101);
}

TEST(Upgrade, ResponseErrors) {
  std::string accept = WebSocketAccept("k");
  int status = 0;
  auto r = ParseUpgradeResponse("HTTP/1.1 403 Forbidden\r\n", accept, &status);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), UpgradeError::kStatus);
  EXPECT_EQ(status, 403);
  r = ParseUpgradeResponse("SSH-2.0-OpenSSH\r\n", accept, &status);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), UpgradeError::kNotHttp);
  r = ParseUpgradeResponse("HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n",
                           accept, &status);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), UpgradeError::kNoUpgrade);
  r = ParseUpgradeResponse(
      "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: nope\r\n\r\n", accept,
      &status);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), UpgradeError::kBadAccept);
  r = ParseUpgradeResponse("HTTP/1.1 101 OK\r\n" + std::string(20000, 'h'), accept, &status);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), UpgradeError::kTooLong);
  r = ParseUpgradeResponse(std::string(20000, 'h'), accept, &status);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), UpgradeError::kTooLong);
  EXPECT_STREQ(UpgradeErrorName(UpgradeError::kBadAccept), "wrong Sec-WebSocket-Accept");
}

// ---- Action Cable frames ----

TEST(ClassifyFrame, ControlMessages) {
  EXPECT_EQ(ClassifyFrame(R"({"type":"welcome","sid":"abc"})").kind, CableKind::kWelcome);
  EXPECT_EQ(ClassifyFrame(R"({"type":"ping","message":1700000000})").kind, CableKind::kPing);
  EXPECT_EQ(
      ClassifyFrame(R"({"identifier":"{\"channel\":\"C\"}","type":"confirm_subscription"})").kind,
      CableKind::kConfirm);
  EXPECT_EQ(ClassifyFrame(R"({"identifier":"x","type":"reject_subscription"})").kind,
            CableKind::kReject);
  EXPECT_EQ(
      ClassifyFrame(R"({"type":"disconnect","reason":"unauthorized","reconnect":false})").kind,
      CableKind::kDisconnect);
  EXPECT_EQ(ClassifyFrame(R"({"identifier":"x","type":"confirm_history"})").kind,
            CableKind::kConfirmHistory);
  EXPECT_EQ(ClassifyFrame(R"({"identifier":"x","type":"reject_history"})").kind,
            CableKind::kRejectHistory);
  EXPECT_EQ(ClassifyFrame(R"({"type":"other"})").kind, CableKind::kOther);
  EXPECT_EQ(ClassifyFrame("not json").kind, CableKind::kOther);
  EXPECT_EQ(ClassifyFrame(R"({"identifier":"x","message":{"text":"hi"}})").kind, CableKind::kOther);
}

TEST(ClassifyFrame, DeliveriesAsObjectOrString) {
  CableEvent e = ClassifyFrame(
      R"({"identifier":"{\"channel\":\"BenchmarkChannel\"}","message":{"seq":42,"ts":1700000000123456789,"pad":"xx"}})");
  EXPECT_EQ(e.kind, CableKind::kDelivery);
  EXPECT_EQ(e.seq, 42u);
  EXPECT_EQ(e.ts, 1700000000123456789);
  // Re-encoded with sorted keys, or kept as a JSON string.
  e = ClassifyFrame(R"({"identifier":"i","message":{"pad":"","seq":7,"ts":99}})");
  EXPECT_EQ(e.kind, CableKind::kDelivery);
  EXPECT_EQ(e.seq, 7u);
  EXPECT_EQ(e.ts, 99);
  e = ClassifyFrame(R"({"identifier":"i","message":"{\"seq\":8,\"ts\":100,\"pad\":\"\"}"})");
  EXPECT_EQ(e.kind, CableKind::kDelivery);
  EXPECT_EQ(e.seq, 8u);
  EXPECT_EQ(e.ts, 100);
}

TEST(Publication, BodyEmbedsDataAsJsonString) {
  EXPECT_EQ(PublicationBody("be\"nch", 3, 12345, "xyz"),
            R"({"stream":"be\"nch","data":"{\"seq\":3,\"ts\":12345,\"pad\":\"xyz\"}"})");
  std::string frame = R"({"identifier":"i","message":{"seq":3,"ts":12345,"pad":"xyz"}})";
  EXPECT_EQ(ClassifyFrame(frame).seq, 3u);
}

TEST(Publication, BatchIsAJsonArrayOfPublications) {
  EXPECT_EQ(BatchBody("s", 7, 1, 5, ""), PublicationBody("s", 7, 5, ""));
  EXPECT_EQ(BatchBody("s", 7, 2, 5, "p"),
            "[" + PublicationBody("s", 7, 5, "p") + "," + PublicationBody("s", 8, 5, "p") + "]");
}

// ---- Worker <-> parent messages ----

TEST(Ipc, ResultRoundTripsThroughSplitReads) {
  WorkerResult r;
  r.counters.subscribed = 7;
  r.counters.failures[static_cast<int>(Failure::kTimeout)] = 2;
  r.counters.cpu_s = 1.5;
  r.handshake.Record(1000);
  r.latency.Record(5000, 3);
  std::string wire;
  AppendMessage(&wire, MsgType::kResult, EncodeResult(r));
  uint64_t ack = 19;
  AppendMessage(&wire, MsgType::kAck, std::string_view(reinterpret_cast<const char*>(&ack), 8));
  MessageReader reader;
  std::vector<MsgType> types;
  WorkerResult back;
  uint64_t back_ack = 0;
  for (char ch : wire) {
    reader.Feed(std::string_view(&ch, 1));
    MsgType t;
    std::string_view p;
    while (reader.Next(&t, &p)) {
      types.push_back(t);
      if (t == MsgType::kResult) {
        ASSERT_TRUE(DecodeResult(p, &back));
      }
      if (t == MsgType::kAck) std::memcpy(&back_ack, p.data(), 8);
    }
  }
  EXPECT_EQ(types, (std::vector<MsgType>{MsgType::kResult, MsgType::kAck}));
  EXPECT_EQ(back.counters.subscribed, 7u);
  EXPECT_EQ(back.counters.failures[static_cast<int>(Failure::kTimeout)], 2u);
  EXPECT_DOUBLE_EQ(back.counters.cpu_s, 1.5);
  EXPECT_EQ(back.latency.count(), 3u);
  EXPECT_EQ(back.handshake.max(), 1000u);
  EXPECT_EQ(back_ack, 19u);
  EXPECT_FALSE(DecodeResult("short", &back));
  Counters c;
  EXPECT_FALSE(DecodeCounters("short", &c));
}

// ---- Options ----

Result<Options, std::string> Parse(std::vector<std::string> args) { return ParseOptions(args); }

std::string ErrorFor(std::vector<std::string> args) {
  auto r = Parse(std::move(args));
  return r.ok() ? "<ok>" : r.error();
}

TEST(Options, WssAndCompression) {
  auto r = Parse({"--url", "wss://127.0.0.1:8443/cable?x=1", "--compression", "--ext"});
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r->tls);
  EXPECT_TRUE(r->compression);
  EXPECT_TRUE(r->ext);
  EXPECT_EQ(r->url.port, 8443);
  EXPECT_EQ(r->url.path, "/cable?x=1");
  auto d = Parse({});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->tls);
  EXPECT_FALSE(d->compression);
  EXPECT_FALSE(d->ext);
}

TEST(Options, Defaults) {
  auto r = Parse({});
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->mode, Mode::kConnect);
  EXPECT_EQ(r->connections, 1000);
  EXPECT_EQ(r->processes, 1);
  EXPECT_EQ(r->source_ips, 2);
  EXPECT_EQ(r->concurrency, 500);
  EXPECT_EQ(r->url.port, 8080);
  EXPECT_EQ(r->url.path, "/cable");
  EXPECT_EQ(r->url.host_port, "127.0.0.1:8080");
  EXPECT_EQ(r->broadcast_url.port, 8090);
  EXPECT_EQ(r->broadcast_url.path, "/_broadcast");
  EXPECT_EQ(r->stream, "bench");
  EXPECT_EQ(r->timeout, 60);
}

TEST(Options, DerivedDefaultsAndBothSyntaxes) {
  auto r = Parse({"--connections=30001", "--mode", "broadcast", "--url",
                  "ws://localhost:9000/ws?user=a", "--msg-rate=0", "--stream", "s2"});
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->processes, 3);
  EXPECT_EQ(r->source_ips, 3);
  EXPECT_EQ(r->mode, Mode::kBroadcast);
  EXPECT_EQ(r->url.path, "/ws?user=a");
  EXPECT_EQ(r->url.host_port, "127.0.0.1:9000");
  EXPECT_EQ(r->msg_rate, 0);
  EXPECT_EQ(r->stream, "s2");
  EXPECT_EQ(r->batch, 1);
  EXPECT_EQ(Parse({"--batch", "16"})->batch, 16);
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_FALSE(Parse({"--no-progress"})->progress);
}

TEST(Options, Errors) {
  EXPECT_EQ(ErrorFor({"--connections", "abc"}),
            "--connections: expected an integer in [1, 1000000], got 'abc'");
  EXPECT_EQ(ErrorFor({"--connections", "0"}),
            "--connections: expected an integer in [1, 1000000], got '0'");
  EXPECT_EQ(ErrorFor({"--connections=12x"}),
            "--connections: expected an integer in [1, 1000000], got '12x'");
  EXPECT_EQ(ErrorFor({"--payload-size", "-1"}),
            "--payload-size: expected an integer in [0, 1048576], got '-1'");
  EXPECT_EQ(ErrorFor({"--rate", "-5"}), "--rate: expected a number in [0, 10000000], got '-5'");
  EXPECT_EQ(ErrorFor({"--duration", "0"}), "--duration: expected a number in (0, 86400], got '0'");
  EXPECT_EQ(ErrorFor({"--timeout", "nan"}),
            "--timeout: expected a number in (0, 86400], got 'nan'");
  EXPECT_EQ(ErrorFor({"--bogus", "1"}), "unknown option '--bogus' (see --help)");
  EXPECT_EQ(ErrorFor({"--bogus=1"}), "unknown option '--bogus' (see --help)");
  EXPECT_EQ(ErrorFor({"stray"}), "unexpected argument 'stray'");
  EXPECT_EQ(ErrorFor({"--connections"}), "--connections: missing value");
  EXPECT_EQ(ErrorFor({"--mode", "flood"}),
            "--mode: expected connect, idle, broadcast or restore, got 'flood'");
  EXPECT_EQ(ErrorFor({"--url", "http://127.0.0.1:8080/cable"}),
            "--url: expected a ws://host:port/path URL, got 'http://127.0.0.1:8080/cable'");
  EXPECT_EQ(ErrorFor({"--url", "ws://10.0.0.1:8080/cable"}),
            "--url: only loopback targets (127.0.0.0/8) are supported, got "
            "'ws://10.0.0.1:8080/cable'");
  EXPECT_EQ(ErrorFor({"--url", "ws://example.com/cable"}),
            "--url: expected an IPv4 address or localhost in 'ws://example.com/cable'");
  EXPECT_EQ(ErrorFor({"--url", "ws://127.0.0.1:99999/cable"}),
            "--url: bad port in 'ws://127.0.0.1:99999/cable'");
  EXPECT_EQ(ErrorFor({"--broadcast-url", "ws://127.0.0.1:8090/_broadcast"}),
            "--broadcast-url: expected a http://host:port/path URL, got "
            "'ws://127.0.0.1:8090/_broadcast'");
  EXPECT_EQ(ErrorFor({"--identifier", "{nope"}),
            "--identifier: expected a JSON object, got '{nope'");
  EXPECT_EQ(ErrorFor({"--identifier", "[1]"}), "--identifier: expected a JSON object, got '[1]'");
  EXPECT_EQ(ErrorFor({"--mode", "broadcast", "--identifier", R"({"channel":"C"})"}),
            "--mode broadcast: the identifier has no \"stream\"; pass --stream");
  EXPECT_EQ(ErrorFor({"--stream", ""}), "--stream: must not be empty");
  EXPECT_EQ(ErrorFor({"--batch", "0"}), "--batch: expected an integer in [1, 10000], got '0'");
  EXPECT_EQ(ErrorFor({"--connections", "5", "--processes", "6"}),
            "--processes: 6 is more than --connections 5");
  EXPECT_EQ(ErrorFor({"--connections", "40000", "--processes", "2"}),
            "--processes: 2 processes would hold 20000 sockets each (max 15000)");
  EXPECT_EQ(ErrorFor({"--server-pid", "999999999"}), "--server-pid: no process 999999999");
  EXPECT_EQ(ErrorFor({"--server-pid", "x"}),
            "--server-pid: expected an integer in [1, 1073741824], got 'x'");
}

TEST(Options, RestoreModeImpliesTheExtendedProtocolAndNeedsAStream) {
  auto o = ParseOptions({"--mode", "restore"});
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->mode, Mode::kRestore);
  EXPECT_TRUE(o->ext);
  EXPECT_STREQ(ModeName(o->mode), "restore");
  EXPECT_EQ(ErrorFor({"--mode", "restore", "--identifier", R"({"channel":"C"})"}),
            "--mode restore: the identifier has no \"stream\"; pass --stream");
}

TEST(Options, HelpDocumentsEveryOption) {
  std::string help = HelpText();
  for (const char* flag :
       {"--mode",          "--url",         "--connections",  "--processes",   "--source-ips",
        "--rate",          "--concurrency", "--identifier",   "--stream",      "--duration",
        "--messages",      "--msg-rate",    "--payload-size", "--batch",       "--broadcast-url",
        "--broadcast-key", "--server-pid",  "--timeout",      "--no-progress", "--help"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace cable::load
