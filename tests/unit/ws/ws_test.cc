#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ws/deflate.h"
#include "ws/frame.h"
#include "ws/reader.h"

namespace cable::ws {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

static_assert(sizeof(FrameReader) <= 32, "FrameReader must stay within its idle memory budget");

// ---------------------------------------------------------------------------------------------
// Test-side client encoder (clients must mask; tests also need to build broken frames).

struct ClientFrame {
  uint8_t opcode = 1;
  std::string payload;
  bool fin = true;
  bool mask = true;
  uint8_t rsv = 0;        // RSV1..3 as bits 0b100, 0b010, 0b001
  int len_encoding = -1;  // -1 = minimal; otherwise force 0 (7-bit), 2 or 8 extra length bytes
  uint64_t declared_len = UINT64_MAX;  // override the length field (UINT64_MAX = payload size)
};

std::string Encode(const ClientFrame& f) {
  static const uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string out;
  out.push_back(static_cast<char>((f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0f)));
  uint64_t len = f.declared_len == UINT64_MAX ? f.payload.size() : f.declared_len;
  int enc = f.len_encoding;
  if (enc < 0) enc = len < 126 ? 0 : (len <= 0xffff ? 2 : 8);
  uint8_t mask_bit = f.mask ? 0x80 : 0;
  if (enc == 0) {
    out.push_back(static_cast<char>(mask_bit | len));
  } else if (enc == 2) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(len));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(len >> (8 * i)));
  }
  if (f.mask) {
    out.append(reinterpret_cast<const char*>(kMask), 4);
    for (size_t i = 0; i < f.payload.size(); ++i) {
      out.push_back(static_cast<char>(f.payload[i] ^ kMask[i % 4]));
    }
  } else {
    out.append(f.payload);
  }
  return out;
}

std::string Text(std::string p, bool fin = true) {
  return Encode({.opcode = 1, .payload = p, .fin = fin});
}
std::string Binary(std::string p) { return Encode({.opcode = 2, .payload = p}); }
std::string Cont(std::string p, bool fin) {
  return Encode({.opcode = 0, .payload = p, .fin = fin});
}
std::string Ping(std::string p) { return Encode({.opcode = 9, .payload = p}); }
std::string Pong(std::string p) { return Encode({.opcode = 10, .payload = p}); }
std::string CloseRaw(std::string p) { return Encode({.opcode = 8, .payload = p}); }
std::string Close(uint16_t code, std::string reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xff));
  return CloseRaw(p + reason);
}

// Records what the reader reports. Control bytes are kept apart from the message events because
// their position relative to messages depends on how the input is split.
class Recorder : public FrameReader::Handler {
 public:
  void OnText(std::string_view m) override { events.push_back("text:" + std::string(m)); }
  void OnBinary(std::string_view m) override { events.push_back("binary:" + std::string(m)); }
  void OnPing(std::string_view p) override { events.push_back("ping:" + std::string(p)); }
  void OnPong(std::string_view p) override { events.push_back("pong:" + std::string(p)); }
  void OnClose(uint16_t code, std::string_view reason) override {
    events.push_back("close:" + std::to_string(code) + ":" + std::string(reason));
  }
  void OnControlBytes(std::string_view bytes) override { control.append(bytes); }
  void OnProtocolError(uint16_t code) override {
    events.push_back("error:" + std::to_string(code));
  }

  std::vector<std::string> events;
  std::string control;
};

constexpr size_t kLimit = 65536;

struct Outcome {
  std::vector<std::string> events;
  std::string control;
  bool finished = false;
  bool idle = false;
};

Outcome FeedWhole(const std::string& input, size_t limit = kLimit) {
  FrameReader reader;
  Recorder rec;
  reader.Feed(input, limit, rec);
  return {rec.events, rec.control, reader.finished(), reader.idle()};
}

Outcome FeedBytewise(const std::string& input, size_t limit = kLimit) {
  FrameReader reader;
  Recorder rec;
  for (char c : input) reader.Feed(std::string_view(&c, 1), limit, rec);
  return {rec.events, rec.control, reader.finished(), reader.idle()};
}

std::string CloseCodeFrame(uint16_t code) { return BuildCloseFrame(code, ""); }

// ---------------------------------------------------------------------------------------------
// Outbound frames

TEST(Frame, HeaderSizes) {
  uint8_t h[kMaxHeaderSize];
  EXPECT_EQ(WriteFrameHeader(h, Opcode::kText, 0), 2u);
  EXPECT_EQ(h[0], 0x81);
  EXPECT_EQ(h[1], 0x00);
  EXPECT_EQ(WriteFrameHeader(h, Opcode::kText, 125), 2u);
  EXPECT_EQ(h[1], 125);
  EXPECT_EQ(WriteFrameHeader(h, Opcode::kBinary, 126), 4u);
  EXPECT_EQ(h[0], 0x82);
  EXPECT_EQ(h[1], 126);
  EXPECT_EQ(h[2], 0x00);
  EXPECT_EQ(h[3], 126);
  EXPECT_EQ(WriteFrameHeader(h, Opcode::kText, 65535), 4u);
  EXPECT_EQ(h[2], 0xff);
  EXPECT_EQ(h[3], 0xff);
  EXPECT_EQ(WriteFrameHeader(h, Opcode::kText, 65536), 10u);
  EXPECT_EQ(h[1], 127);
  const uint8_t want[8] = {0, 0, 0, 0, 0, 1, 0, 0};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(h[2 + i], want[i]) << i;
  EXPECT_EQ(WriteFrameHeader(h, Opcode::kPing, 3), 2u);
  EXPECT_EQ(h[0], 0x89);
}

TEST(Frame, BuildFrame) {
  EXPECT_EQ(BuildFrame(Opcode::kText, "hi"), std::string("\x81\x02hi", 4));
  std::string big(70000, 'x');
  std::string f = BuildFrame(Opcode::kText, big);
  EXPECT_EQ(f.size(), 10 + big.size());
  EXPECT_EQ(f.substr(10), big);
}

TEST(Frame, CloseFrame) {
  EXPECT_EQ(BuildCloseFrame(1000, "Auth Failed"), std::string("\x88\x0d\x03\xe8"
                                                              "Auth Failed",
                                                              15));
  EXPECT_EQ(BuildCloseFrame(1011, ""), std::string("\x88\x02\x03\xf3", 4));
  std::string long_reason(200, 'r');
  std::string f = BuildCloseFrame(1001, long_reason);
  EXPECT_EQ(f.size(), 2u + 125u);
  EXPECT_EQ(static_cast<uint8_t>(f[1]), 125);
  // A cut inside a 2-byte character backs off to the character boundary.
  std::string utf(122, 'a');
  utf += "\xc3\xa9";  // bytes 122..123; the limit is 123 bytes of reason
  f = BuildCloseFrame(1000, utf);
  EXPECT_EQ(f.size(), 2u + 2u + 122u);
  EXPECT_EQ(f.substr(4), std::string(122, 'a'));
}

// ---------------------------------------------------------------------------------------------
// Inbound: good traffic

TEST(Reader, Sizes) { EXPECT_LE(sizeof(FrameReader), 32u); }

TEST(Reader, TextAndBinary) {
  Outcome o = FeedWhole(Text("{\"command\":\"subscribe\"}") + Binary(std::string("\x00\xff", 2)));
  EXPECT_THAT(o.events, ElementsAre("text:{\"command\":\"subscribe\"}",
                                    "binary:" + std::string("\x00\xff", 2)));
  EXPECT_THAT(o.control, IsEmpty());
  EXPECT_FALSE(o.finished);
  EXPECT_TRUE(o.idle);
}

TEST(Reader, EmptyMessages) {
  Outcome o = FeedWhole(Text("") + Binary("") + Ping(""));
  EXPECT_THAT(o.events, ElementsAre("text:", "binary:", "ping:"));
  EXPECT_EQ(o.control, std::string("\x8a\x00", 2));
  EXPECT_TRUE(o.idle);
}

TEST(Reader, PingGetsPongWithSamePayload) {
  Outcome o = FeedWhole(Ping("hello"));
  EXPECT_THAT(o.events, ElementsAre("ping:hello"));
  EXPECT_EQ(o.control, "\x8a\x05hello");
  EXPECT_TRUE(o.idle);
  Outcome pong = FeedWhole(Pong("x"));
  EXPECT_THAT(pong.events, ElementsAre("pong:x"));
  EXPECT_THAT(pong.control, IsEmpty());
}

TEST(Reader, MaxSizeControlPayload) {
  std::string p(125, 'p');
  Outcome o = FeedWhole(Ping(p));
  EXPECT_THAT(o.events, ElementsAre("ping:" + p));
  EXPECT_EQ(o.control, std::string("\x8a\x7d", 2) + p);
}

TEST(Reader, FragmentedWithInterleavedControl) {
  std::string in = Text("Hel", false) + Ping("p1") + Cont("lo ", false) + Pong("q") +
                   Cont("", false) + Cont("World", true);
  Outcome o = FeedWhole(in);
  EXPECT_THAT(o.events, ElementsAre("ping:p1", "pong:q", "text:Hello World"));
  EXPECT_EQ(o.control, "\x8a\x02p1");
  EXPECT_TRUE(o.idle);
  EXPECT_FALSE(o.finished);
}

TEST(Reader, FragmentedBinaryAndUtf8AcrossFragments) {
  // "é" (c3 a9) split across two fragments is valid.
  Outcome o = FeedWhole(Text("caf\xc3", false) + Cont("\xa9!", true) +
                        Encode({.opcode = 2, .payload = "ab", .fin = false}) + Cont("cd", true));
  EXPECT_THAT(o.events, ElementsAre("text:caf\xc3\xa9!", "binary:abcd"));
  EXPECT_THAT(o.control, IsEmpty());
}

TEST(Reader, LengthEncodings) {
  std::string m125(125, 'a'), m126(126, 'b'), m65535(65535, 'c'), m65536(65536, 'd');
  Outcome o = FeedWhole(Binary(m125) + Binary(m126) + Binary(m65535) + Binary(m65536), 1 << 20);
  ASSERT_EQ(o.events.size(), 4u);
  EXPECT_EQ(o.events[0], "binary:" + m125);
  EXPECT_EQ(o.events[1], "binary:" + m126);
  EXPECT_EQ(o.events[2], "binary:" + m65535);
  EXPECT_EQ(o.events[3], "binary:" + m65536);
  EXPECT_TRUE(o.idle);
}

TEST(Reader, BigMessageBytewise) {
  std::string big(70000, 'z');
  big[0] = '{';
  Outcome o = FeedBytewise(Text(big), 1 << 20);
  EXPECT_THAT(o.events, ElementsAre("text:" + big));
  EXPECT_TRUE(o.idle);
}

// A mixed stream, split into two Feeds at every byte position, must give the same result; idle()
// after the first part must be true exactly at message boundaries.
TEST(Reader, SplitAtEveryBoundary) {
  std::vector<std::string> parts = {
      Text("{\"command\":\"message\"}"),
      Ping("pp"),
      Text("frag-", false),
      Pong("x"),
      Cont(std::string(300, 'm'), false),  // 16-bit length
      Ping("in"),
      Cont("-end", true),
      Binary("bin"),
      Text("last"),
  };
  std::string in;
  std::vector<size_t> message_ends;  // offsets where no frame or fragmented message is open
  bool open = false;
  for (const std::string& p : parts) {
    in += p;
    uint8_t b0 = static_cast<uint8_t>(p[0]);
    bool control = (b0 & 0x08) != 0;
    if (!control) open = (b0 & 0x80) == 0;
    if (!open) message_ends.push_back(in.size());
  }
  Outcome want = FeedWhole(in);
  ASSERT_THAT(want.events, ElementsAre("text:{\"command\":\"message\"}", "ping:pp", "pong:x",
                                       "ping:in", "text:frag-" + std::string(300, 'm') + "-end",
                                       "binary:bin", "text:last"));
  ASSERT_EQ(want.control, "\x8a\x02pp\x8a\x02in");

  for (size_t cut = 1; cut < in.size(); ++cut) {
    FrameReader reader;
    Recorder rec;
    reader.Feed(std::string_view(in).substr(0, cut), kLimit, rec);
    bool at_boundary =
        std::find(message_ends.begin(), message_ends.end(), cut) != message_ends.end();
    EXPECT_EQ(reader.idle(), at_boundary) << "cut=" << cut;
    reader.Feed(std::string_view(in).substr(cut), kLimit, rec);
    EXPECT_EQ(rec.events, want.events) << "cut=" << cut;
    EXPECT_EQ(rec.control, want.control) << "cut=" << cut;
    EXPECT_TRUE(reader.idle()) << "cut=" << cut;
    EXPECT_FALSE(reader.finished()) << "cut=" << cut;
  }
  Outcome bytewise = FeedBytewise(in);
  EXPECT_EQ(bytewise.events, want.events);
  EXPECT_EQ(bytewise.control, want.control);
}

TEST(Reader, IdleTracksPartialFrames) {
  FrameReader reader;
  Recorder rec;
  EXPECT_TRUE(reader.idle());
  std::string t = Text("hello");
  reader.Feed(t.substr(0, 1), kLimit, rec);  // partial header
  EXPECT_FALSE(reader.idle());
  reader.Feed(t.substr(1, 6), kLimit, rec);  // header done, partial payload
  EXPECT_FALSE(reader.idle());
  reader.Feed(t.substr(7), kLimit, rec);
  EXPECT_TRUE(reader.idle());
  std::string first = Text("a", false);
  reader.Feed(first, kLimit, rec);  // complete frame, but the message is still open
  EXPECT_FALSE(reader.idle());
  reader.Feed(Ping("z"), kLimit, rec);
  EXPECT_FALSE(reader.idle());
  reader.Feed(Cont("b", true), kLimit, rec);
  EXPECT_TRUE(reader.idle());
  EXPECT_THAT(rec.events, ElementsAre("text:hello", "ping:z", "text:ab"));
}

TEST(Reader, MoveMidFrame) {
  std::string t = Text("moved message");
  FrameReader a;
  Recorder rec;
  a.Feed(t.substr(0, 5), kLimit, rec);
  FrameReader b(std::move(a));
  b.Feed(t.substr(5), kLimit, rec);
  FrameReader c;
  c = std::move(b);
  c.Feed(Text("again"), kLimit, rec);
  EXPECT_THAT(rec.events, ElementsAre("text:moved message", "text:again"));
  EXPECT_TRUE(c.idle());
}

// ---------------------------------------------------------------------------------------------
// Inbound: close handshake

TEST(Reader, CloseHandshake) {
  for (auto feed : {FeedWhole, FeedBytewise}) {
    Outcome o = feed(Text("bye soon") + Close(1000, "bye") + Text("ignored"), kLimit);
    EXPECT_THAT(o.events, ElementsAre("text:bye soon", "close:1000:bye"));
    EXPECT_EQ(o.control, CloseCodeFrame(1000));
    EXPECT_TRUE(o.finished);
    EXPECT_TRUE(o.idle);
  }
}

TEST(Reader, CloseWithoutStatus) {
  for (auto feed : {FeedWhole, FeedBytewise}) {
    Outcome o = feed(CloseRaw(""), kLimit);
    EXPECT_THAT(o.events, ElementsAre("close:1005:"));
    EXPECT_EQ(o.control, std::string("\x88\x00", 2));
    EXPECT_TRUE(o.finished);
  }
}

TEST(Reader, CloseCodesGorillaAccepts) {
  for (uint16_t code : {1001, 1003, 1008, 1011, 1012, 1013, 3000, 4999}) {
    Outcome o = FeedWhole(Close(code, "r\xc3\xa9"));
    EXPECT_THAT(o.events, ElementsAre("close:" + std::to_string(code) + ":r\xc3\xa9")) << code;
    EXPECT_EQ(o.control, CloseCodeFrame(code)) << code;
  }
}

TEST(Reader, CloseInsideFragmentedMessage) {
  Outcome o = FeedWhole(Text("part", false) + Close(1001, ""));
  EXPECT_THAT(o.events, ElementsAre("close:1001:"));
  EXPECT_EQ(o.control, CloseCodeFrame(1001));
}

TEST(Reader, PongBeforeCloseReply) {
  Outcome o = FeedWhole(Ping("a") + Close(1000, ""));
  EXPECT_THAT(o.events, ElementsAre("ping:a", "close:1000:"));
  EXPECT_EQ(o.control,
            "\x8a\x01"
            "a" +
                CloseCodeFrame(1000));
}

TEST(Reader, FinishedIgnoresFurtherInput) {
  FrameReader reader;
  Recorder rec;
  reader.Feed(Close(1000, ""), kLimit, rec);
  ASSERT_TRUE(reader.finished());
  reader.Feed(Text("late") + Ping("late"), kLimit, rec);
  EXPECT_THAT(rec.events, ElementsAre("close:1000:"));
  EXPECT_EQ(rec.control, CloseCodeFrame(1000));
}

// ---------------------------------------------------------------------------------------------
// Inbound: errors. Every case is fed whole and byte by byte; the close frame must carry the code.

struct ErrorCase {
  const char* name;
  std::string input;
  uint16_t code;
  std::vector<std::string> events_before = {};
  size_t limit = kLimit;
};

TEST(Reader, Errors) {
  std::string too_long_ping;
  too_long_ping.push_back(static_cast<char>(0x89));
  too_long_ping.push_back(static_cast<char>(0x80 | 126));
  too_long_ping += std::string("\x00\x7e", 2) + "MASK" + std::string(126, 'x');

  const std::vector<ErrorCase> cases = {
      {"unmasked text", Encode({.opcode = 1, .payload = "hi", .mask = false}), 1002},
      {"unmasked after good",
       Text("ok") + Encode({.opcode = 1, .payload = "hi", .mask = false}),
       1002,
       {"text:ok"}},
      {"rsv1", Encode({.opcode = 1, .payload = "hi", .rsv = 4}), 1002},
      {"rsv2", Encode({.opcode = 2, .payload = "hi", .rsv = 2}), 1002},
      {"rsv3 on ping", Encode({.opcode = 9, .payload = "hi", .rsv = 1}), 1002},
      {"opcode 3", Encode({.opcode = 3, .payload = "x"}), 1002},
      {"opcode 0xb", Encode({.opcode = 0xb, .payload = "x"}), 1002},
      {"ping 126 bytes", Encode({.opcode = 9, .payload = std::string(126, 'p')}), 1002},
      {"ping 126 via 7-bit field", too_long_ping, 1002},
      {"fragmented ping", Encode({.opcode = 9, .payload = "p", .fin = false}), 1002},
      {"fragmented close", Encode({.opcode = 8, .payload = "\x03\xe8", .fin = false}), 1002},
      {"continuation first", Cont("x", true), 1002},
      {"text inside fragmented", Text("a", false) + Text("b"), 1002},
      {"binary inside fragmented", Text("a", false) + Binary("b"), 1002},
      {"non-minimal 16-bit", Encode({.opcode = 1, .payload = "hello", .len_encoding = 2}), 1002},
      {"non-minimal 64-bit", Encode({.opcode = 1, .payload = "hello", .len_encoding = 8}), 1002},
      {"64-bit msb",
       Encode({.opcode = 2, .payload = "", .len_encoding = 8, .declared_len = 1ull << 63}), 1002},
      {"close 1-byte payload", CloseRaw("\x03"), 1002},
      {"close code 999", Close(999, ""), 1002},
      {"close code 1004", Close(1004, ""), 1002},
      {"close code 1005", Close(1005, ""), 1002},
      {"close code 1006", Close(1006, ""), 1002},
      {"close code 1014", Close(1014, ""), 1002},
      {"close code 2999", Close(2999, ""), 1002},
      {"close code 5000", Close(5000, ""), 1002},
      {"close bad utf8 reason", Close(1000, "\xff"), 1007},
      {"unmasked close", Encode({.opcode = 8, .payload = "\x03\xe8", .mask = false}), 1002},
      {"close 126", Encode({.opcode = 8, .payload = std::string(126, 'c')}), 1002},
      {"bad utf8", Text("\xc3\x28"), 1007},
      {"surrogate", Text("\xed\xa0\x80"), 1007},
      {"overlong", Text("\xc0\xaf"), 1007},
      {"truncated utf8", Text("ok\xe2\x82"), 1007},
      {"bad utf8 across fragments", Text("ok\xe2", false) + Cont("\x28\xa1", true), 1007},
      {"good then bad utf8", Text("fine") + Text("\xff"), 1007, {"text:fine"}},
      {"too big", Text(std::string(11, 'a')), 1009, {}, 10},
      {"too big fragmented", Text("abcdef", false) + Cont("ghijk", true), 1009, {}, 10},
      {"too big binary", Binary(std::string(65537, 'b')), 1009},
  };
  for (const ErrorCase& c : cases) {
    std::vector<std::string> want = c.events_before;
    want.push_back("error:" + std::to_string(c.code));
    Outcome whole = FeedWhole(c.input, c.limit);
    EXPECT_EQ(whole.events, want) << c.name;
    EXPECT_EQ(whole.control, CloseCodeFrame(c.code)) << c.name;
    EXPECT_TRUE(whole.finished) << c.name;
    EXPECT_TRUE(whole.idle) << c.name;
    Outcome bytewise = FeedBytewise(c.input, c.limit);
    EXPECT_EQ(bytewise.events, want) << c.name << " (bytewise)";
    EXPECT_EQ(bytewise.control, CloseCodeFrame(c.code)) << c.name << " (bytewise)";
    EXPECT_TRUE(bytewise.finished) << c.name << " (bytewise)";
  }
}

TEST(Reader, ExactlyAtLimitIsFine) {
  Outcome o = FeedWhole(Text("abcde", false) + Cont("fghij", true), 10);
  EXPECT_THAT(o.events, ElementsAre("text:abcdefghij"));
  EXPECT_FALSE(o.finished);
}

TEST(Reader, TooBigDetectedBeforePayloadArrives) {
  // The 1009 must not wait for (or buffer) the whole oversized frame.
  std::string frame = Binary(std::string(100000, 'b'));
  FrameReader reader;
  Recorder rec;
  reader.Feed(std::string_view(frame).substr(0, 20), kLimit, rec);
  EXPECT_THAT(rec.events, ElementsAre("error:1009"));
  EXPECT_EQ(rec.control, CloseCodeFrame(1009));
}

TEST(Reader, PongsBeforeErrorAreKeptWhenInEarlierFeed) {
  FrameReader reader;
  Recorder rec;
  reader.Feed(Ping("1"), kLimit, rec);
  reader.Feed(Text("\xff"), kLimit, rec);
  EXPECT_THAT(rec.events, ElementsAre("ping:1", "error:1007"));
  EXPECT_EQ(rec.control,
            "\x8a\x01"
            "1" +
                CloseCodeFrame(1007));
}

// ---------------------------------------------------------------------------------------------
// permessage-deflate

Outcome FeedDeflate(const std::string& input, size_t limit = kLimit, bool bytewise = false) {
  FrameReader reader;
  reader.set_deflate(true);
  Recorder rec;
  if (bytewise) {
    for (char c : input) reader.Feed(std::string_view(&c, 1), limit, rec);
  } else {
    reader.Feed(input, limit, rec);
  }
  return {rec.events, rec.control, reader.finished(), reader.idle()};
}

std::string Compressed(const std::string& text) {
  std::string z;
  DeflateMessage(text, &z);
  return z;
}

TEST(Deflate, RoundTripAndTailRemoved) {
  for (const std::string& in : {std::string(), std::string("a"), std::string(100000, 'q'),
                                std::string("{\"text\":\"h\u00e9llo\"}")}) {
    std::string z = Compressed(in);
    ASSERT_FALSE(z.size() >= 4 && z.compare(z.size() - 4, 4, std::string("\0\0\xff\xff", 4)) == 0);
    std::string out;
    EXPECT_EQ(InflateMessage(z, 0, &out), InflateResult::kOk);
    EXPECT_EQ(out, in);
  }
}

TEST(Deflate, InflateIsBoundedAndRejectsGarbage) {
  std::string bomb = Compressed(std::string(10 << 20, '0'));
  EXPECT_LT(bomb.size(), 65536u);  // level 1: ~45 KB, under the wire limit
  std::string out;
  EXPECT_EQ(InflateMessage(bomb, 65536, &out), InflateResult::kTooBig);
  EXPECT_LE(out.size(), 65536u);
  EXPECT_EQ(InflateMessage(Compressed(std::string(65536, 'x')), 65536, &out), InflateResult::kOk);
  EXPECT_EQ(out.size(), 65536u);
  EXPECT_EQ(InflateMessage(Compressed(std::string(65537, 'x')), 65536, &out),
            InflateResult::kTooBig);
  EXPECT_EQ(InflateMessage(std::string("\xff\xff\xff\xff", 4), 0, &out), InflateResult::kCorrupt);
}

TEST(Deflate, BuildDeflatedFrameSetsRsv1) {
  const std::string text = "hello hello hello hello hello hello";
  std::string f = BuildDeflatedFrame(Opcode::kText, text);
  EXPECT_EQ(static_cast<uint8_t>(f[0]), 0xc1);
  ASSERT_LT(f.size() - 2, text.size());
  std::string out;
  EXPECT_EQ(InflateMessage(f.substr(2), 0, &out), InflateResult::kOk);
  EXPECT_EQ(out, text);
}

TEST(Deflate, MessagesThatDoNotShrinkGoUncompressed) {
  std::string compressed;
  DeflateMessage("hello", &compressed);
  ASSERT_GE(compressed.size(), 5u) << "deflating five distinct bytes does not pay";
  std::string f = BuildDeflatedFrame(Opcode::kText, "hello");
  EXPECT_EQ(static_cast<uint8_t>(f[0]), 0x81) << "FIN + text, no RSV1";
  EXPECT_EQ(f.substr(2), "hello");
}

TEST(ReaderDeflate, CompressedTextIsInflated) {
  std::string msg = "{\"command\":\"subscribe\",\"identifier\":\"x\"}";
  std::string frame = Encode({.opcode = 1, .payload = Compressed(msg), .rsv = 4});
  for (bool bytewise : {false, true}) {
    Outcome o = FeedDeflate(frame + Text("plain"), kLimit, bytewise);
    EXPECT_THAT(o.events, ElementsAre("text:" + msg, "text:plain"));
    EXPECT_TRUE(o.idle);
  }
  // Fragmented: RSV1 on the first frame only.
  std::string z = Compressed(msg);
  Outcome o = FeedDeflate(Encode({.opcode = 1, .payload = z.substr(0, 5), .fin = false, .rsv = 4}) +
                          Cont(z.substr(5), true));
  EXPECT_THAT(o.events, ElementsAre("text:" + msg));
}

TEST(ReaderDeflate, Rsv1RulesAndLimits) {
  std::string z = Compressed("hi");
  // Not negotiated: RSV1 is a protocol error.
  EXPECT_THAT(FeedWhole(Encode({.opcode = 1, .payload = z, .rsv = 4})).events,
              ElementsAre("error:1002"));
  // On a continuation or a control frame, or RSV2: protocol error.
  EXPECT_THAT(
      FeedDeflate(Text("a", false) + Encode({.opcode = 0, .payload = "b", .rsv = 4})).events,
      ElementsAre("error:1002"));
  EXPECT_THAT(FeedDeflate(Encode({.opcode = 9, .payload = "", .rsv = 4})).events,
              ElementsAre("error:1002"));
  EXPECT_THAT(FeedDeflate(Encode({.opcode = 1, .payload = z, .rsv = 2})).events,
              ElementsAre("error:1002"));
  // Inflated beyond the limit: 1009 (the close frame as for a plain oversized message).
  Outcome bomb =
      FeedDeflate(Encode({.opcode = 1, .payload = Compressed(std::string(100000, 'a')), .rsv = 4}) +
                  Text("never delivered"));
  EXPECT_THAT(bomb.events, ElementsAre("error:1009"));
  EXPECT_EQ(bomb.control, CloseCodeFrame(1009));
  EXPECT_EQ(FeedWhole(Text(std::string(kLimit + 1, 'a'))).control, CloseCodeFrame(1009));
  // Corrupt data and invalid UTF-8 once inflated: 1007. Binary is not UTF-8 checked.
  EXPECT_THAT(FeedDeflate(Encode({.opcode = 1, .payload = "\xff\xff\xff", .rsv = 4})).events,
              ElementsAre("error:1007"));
  EXPECT_THAT(
      FeedDeflate(Encode({.opcode = 1, .payload = Compressed("\xc3\x28"), .rsv = 4})).events,
      ElementsAre("error:1007"));
  EXPECT_THAT(
      FeedDeflate(Encode({.opcode = 2, .payload = Compressed("\xc3\x28"), .rsv = 4})).events,
      ElementsAre("binary:\xc3\x28"));
}

}  // namespace
}  // namespace cable::ws
