// protocol/transport_encode: SSE events (spec Appendix D) and JSON lines for the HTTP transports.
#include "protocol/transport_encode.h"

#include <gtest/gtest.h>

namespace cable::protocol {
namespace {

std::string Unchunk(const std::string& chunk) {
  size_t eol = chunk.find("\r\n");
  size_t size = std::stoul(chunk.substr(0, eol), nullptr, 16);
  EXPECT_EQ(chunk.size(), eol + 2 + size + 2);
  EXPECT_EQ(chunk.substr(chunk.size() - 2), "\r\n");
  return chunk.substr(eol + 2, size);
}

TEST(TransportEncode, TypedRepliesAreNamedEventsWithTheWholeJson) {
  const std::string welcome = R"({"type":"welcome","sid":"s1"})";
  EXPECT_EQ(Unchunk(EncodeSseReply(welcome, true, false)),
            "event: welcome\ndata: " + welcome + "\n\n");
  EXPECT_EQ(Unchunk(EncodeSseReply(welcome, false, false)),
            "event: welcome\ndata: " + welcome + "\n\n");
  EXPECT_EQ(EncodeSseReply(welcome, true, true), "");  // raw: no typed events
}

TEST(TransportEncode, DisconnectWithoutReconnectCarriesRetry) {
  EXPECT_EQ(Unchunk(EncodeSseReply(R"({"type":"disconnect","reason":"remote","reconnect":false})",
                                   true, false)),
            "event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"remote\","
            "\"reconnect\":false}\nretry: 31536000000\n\n");
  EXPECT_EQ(
      Unchunk(EncodeSseReply(R"({"type":"disconnect","reason":"server_restart","reconnect":true})",
                             true, false)),
      "event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"server_restart\","
      "\"reconnect\":true}\n\n");
}

TEST(TransportEncode, GetStreamsUnwrapTheMessage) {
  const std::string reply = R"({"identifier":"{\"channel\":\"C\"}","message":{"a":1}})";
  EXPECT_EQ(Unchunk(EncodeSseReply(reply, true, false)), "data: {\"a\":1}\n\n");
  EXPECT_EQ(Unchunk(EncodeSseReply(reply, false, false)), "data: " + reply + "\n\n");
  // A string message is sent as its text, one data line per line.
  EXPECT_EQ(Unchunk(EncodeSseReply(R"({"identifier":"x","message":"a\nb\r\nc"})", true, false)),
            "data: a\ndata: b\ndata: c\n\n");
  // A position becomes the event id.
  EXPECT_EQ(
      Unchunk(EncodeSseReply(
          R"({"identifier":"x","message":1,"stream_id":"s","epoch":"e","offset":7})", true, false)),
      "data: 1\nid: 7/e/s\n\n");
}

TEST(TransportEncode, NonJsonIsSentAsData) {
  EXPECT_EQ(Unchunk(EncodeSseReply("not json", true, false)), "data: not json\n\n");
}

TEST(TransportEncode, HelpersAndJsonLines) {
  EXPECT_EQ(SseEventId(3, "ep", "st"), "3/ep/st");
  EXPECT_EQ(SseEventId(0, "ep", "st"), "");
  EXPECT_EQ(HttpChunk("hello"), "5\r\nhello\r\n");
  EXPECT_EQ(HttpChunk(std::string(300, 'x')).substr(0, 5), "12c\r\n");
  EXPECT_EQ(JsonLine("{\"a\":\n1}"), "{\"a\": 1}\n");
  EXPECT_EQ(SplitJsonLines("a\r\n\nb\nc"), (std::vector<std::string_view>{"a", "b", "c"}));
  EXPECT_TRUE(SplitJsonLines("\n\r\n").empty());
  EXPECT_EQ(SseMessageText("\"\\u003cb\\u003e\""), "<b>");
  EXPECT_EQ(SseMessageText("{\"x\": 1}"), "{\"x\": 1}");
}

}  // namespace
}  // namespace cable::protocol
