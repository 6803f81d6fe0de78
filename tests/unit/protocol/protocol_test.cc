// Unit tests for the Action Cable wire protocol: command decoding, server frame encoders,
// broadcast data -> message JSON, and the publication parser.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/broadcast.h"
#include "protocol/command.h"
#include "protocol/encode.h"

namespace cable::protocol {
namespace {

using namespace std::string_literals;

// ---------------------------------------------------------------------------------------------
// CommandDecoder

class DecodeTest : public ::testing::Test {
 protected:
  ClientCommand Ok(std::string_view frame) {
    auto r = decoder_.Decode(frame);
    EXPECT_TRUE(r.ok()) << "frame: " << frame
                        << " error: " << (r.ok() ? "" : DecodeErrorName(r.error()));
    return r.ok() ? r.value() : ClientCommand{};
  }
  DecodeError Err(std::string_view frame) {
    auto r = decoder_.Decode(frame);
    EXPECT_FALSE(r.ok()) << "frame unexpectedly decoded: " << frame;
    return r.ok() ? DecodeError::kMalformedJson : r.error();
  }
  CommandDecoder decoder_;
};

TEST_F(DecodeTest, Subscribe) {
  auto c = Ok(R"({"command":"subscribe","identifier":"{\"channel\":\"ChatChannel\",\"id\":42}"})");
  EXPECT_EQ(c.type, CommandType::kSubscribe);
  EXPECT_EQ(c.name, "subscribe");
  EXPECT_EQ(c.identifier, R"({"channel":"ChatChannel","id":42})");
  EXPECT_FALSE(c.has_data);
  EXPECT_EQ(c.data, "");
}

TEST_F(DecodeTest, Unsubscribe) {
  auto c = Ok(R"({"command":"unsubscribe","identifier":"{\"channel\":\"A\"}"})");
  EXPECT_EQ(c.type, CommandType::kUnsubscribe);
  EXPECT_EQ(c.identifier, R"({"channel":"A"})");
}

TEST_F(DecodeTest, MessageDataIsDecodedString) {
  auto c = Ok(
      R"({"command":"message","identifier":"{\"channel\":\"A\"}","data":"{\"action\":\"speak\",\"text\":\"hi \u00e9\\n\"}"})");
  EXPECT_EQ(c.type, CommandType::kMessage);
  EXPECT_TRUE(c.has_data);
  EXPECT_EQ(c.data, "{\"action\":\"speak\",\"text\":\"hi \xC3\xA9\\n\"}");
}

TEST_F(DecodeTest, PingPong) {
  EXPECT_EQ(Ok(R"({"command":"ping"})").type, CommandType::kPing);
  EXPECT_EQ(Ok(R"({"command":"pong"})").type, CommandType::kPong);
}

TEST_F(DecodeTest, WhisperKeepsRawJsonData) {
  auto c =
      Ok(R"({"command":"whisper","identifier":"x","data":{ "event" : "typing", "n":[1, 2]} })");
  EXPECT_EQ(c.type, CommandType::kWhisper);
  EXPECT_TRUE(c.has_data);
  EXPECT_EQ(c.data, R"({ "event" : "typing", "n":[1, 2]})");
}

TEST_F(DecodeTest, WhisperScalarDataIsRawJson) {
  auto c = Ok(R"({"command":"whisper","identifier":"x","data":"hi\u0021" , "z":1})");
  EXPECT_EQ(c.data, R"("hi\u0021")");
  c = Ok(R"({"command":"whisper","identifier":"x","data":12.5 })");
  EXPECT_EQ(c.data, "12.5");
  c = Ok(R"({"command":"whisper","identifier":"x","data":[true,false]})");
  EXPECT_EQ(c.data, "[true,false]");
}

TEST_F(DecodeTest, HistoryKeepsRawJson) {
  auto c = Ok(
      R"({"command":"history","identifier":"x","history":{"since":1681828329,"streams":{"chat_42":{"offset":32,"epoch":"x123"}}}})");
  EXPECT_EQ(c.type, CommandType::kHistory);
  EXPECT_EQ(c.history,
            R"({"since":1681828329,"streams":{"chat_42":{"offset":32,"epoch":"x123"}}})");
  EXPECT_FALSE(c.has_data);
}

TEST_F(DecodeTest, SubscribeWithHistoryAndPresence) {
  auto c = Ok(
      R"({"command":"subscribe","identifier":"x","history":{"since":1},"presence":{"id":"u1","info":{"a":1}}})");
  EXPECT_EQ(c.type, CommandType::kSubscribe);
  EXPECT_EQ(c.history, R"({"since":1})");
  EXPECT_EQ(c.presence, R"({"id":"u1","info":{"a":1}})");
}

TEST_F(DecodeTest, JoinLeavePresence) {
  auto c = Ok(R"({"command":"join","identifier":"x","presence":{"id":"42","info":{"name":"Jo"}}})");
  EXPECT_EQ(c.type, CommandType::kJoin);
  EXPECT_EQ(c.presence, R"({"id":"42","info":{"name":"Jo"}})");
  c = Ok(R"({"command":"leave","identifier":"x","presence":{"id":"42"}})");
  EXPECT_EQ(c.type, CommandType::kLeave);
  EXPECT_EQ(c.presence, R"({"id":"42"})");
  c = Ok(R"({"command":"presence","identifier":"x","data":{"return_records":true}})");
  EXPECT_EQ(c.type, CommandType::kPresence);
  EXPECT_EQ(c.data, R"({"return_records":true})");
}

TEST_F(DecodeTest, UnknownCommandIsNotAnError) {
  auto c = Ok(R"({"command":"dance","identifier":"x"})");
  EXPECT_EQ(c.type, CommandType::kUnknown);
  EXPECT_EQ(c.name, "dance");
  // Names are case-sensitive (Go switches on the exact string) and "" is just unknown.
  EXPECT_EQ(Ok(R"({"command":"Subscribe"})").type, CommandType::kUnknown);
  EXPECT_EQ(Ok(R"({"command":""})").type, CommandType::kUnknown);
}

TEST_F(DecodeTest, IdentifierPreservedByteExact) {
  // Key order, spacing and escapes inside the identifier string are kept (no normalization).
  auto c = Ok(
      R"({"command":"subscribe","identifier":"{\"id\":1, \"channel\":\"A\\\"B\",\"u\":\"\u2028<\"}"})");
  EXPECT_EQ(c.identifier, "{\"id\":1, \"channel\":\"A\\\"B\",\"u\":\"\xE2\x80\xA8<\"}");
}

TEST_F(DecodeTest, ExtraFieldsAndWhitespaceIgnored) {
  auto c =
      Ok(" \n{ \"extra\" : {\"deep\":[1,{\"x\":null}]}, \"command\" : \"message\", "
         "\"identifier\":\"i\", \"data\":\"d\", \"n\": -1.5e3 } \r\n");
  EXPECT_EQ(c.type, CommandType::kMessage);
  EXPECT_EQ(c.identifier, "i");
  EXPECT_EQ(c.data, "d");
}

TEST_F(DecodeTest, KeysMatchCaseInsensitivelyLastWins) {
  // encoding/json semantics: case-insensitive field match, later keys overwrite earlier ones.
  auto c = Ok(R"({"Command":"ping","IDENTIFIER":"a","identifier":"b"})");
  EXPECT_EQ(c.type, CommandType::kPing);
  EXPECT_EQ(c.identifier, "b");
  c = Ok(R"({"command":"ping","command":"subscribe"})");
  EXPECT_EQ(c.type, CommandType::kSubscribe);
}

TEST_F(DecodeTest, NullStringFieldsAreIgnored) {
  auto c = Ok(R"({"command":"subscribe","identifier":null})");
  EXPECT_EQ(c.identifier, "");
  c = Ok(R"({"command":"ping","command":null})");
  EXPECT_EQ(c.type, CommandType::kPing);
  EXPECT_EQ(Err(R"({"command":null,"identifier":"x"})"), DecodeError::kMissingCommand);
}

TEST_F(DecodeTest, InvalidUtf8InStringsBecomesReplacementChar) {
  auto c =
      Ok("{\"command\":\"subscribe\",\"identifier\":\"a\xFF"
         "b\"}");
  EXPECT_EQ(c.identifier,
            "a\xEF\xBF\xBD"
            "b");
}

TEST_F(DecodeTest, MalformedJson) {
  EXPECT_EQ(Err(""), DecodeError::kMalformedJson);
  EXPECT_EQ(Err("   "), DecodeError::kMalformedJson);
  EXPECT_EQ(Err(R"({"command":"ping")"), DecodeError::kMalformedJson);     // truncated
  EXPECT_EQ(Err(R"({"command":"pi)"), DecodeError::kMalformedJson);        // truncated string
  EXPECT_EQ(Err(R"({"command":"ping"} x)"), DecodeError::kMalformedJson);  // trailing garbage
  EXPECT_EQ(Err(R"({"command":"ping"}{})"), DecodeError::kMalformedJson);  // two documents
  EXPECT_EQ(Err(R"({"command":"ping"}})"), DecodeError::kMalformedJson);   // extra brace
  EXPECT_EQ(Err(R"({"command":"ping",})"), DecodeError::kMalformedJson);   // trailing comma
  EXPECT_EQ(Err(R"({"command" "ping"})"), DecodeError::kMalformedJson);    // missing colon
  EXPECT_EQ(Err(R"({'command':'ping'})"), DecodeError::kMalformedJson);    // single quotes
  EXPECT_EQ(Err(R"({"command":"ping","x":tru})"), DecodeError::kMalformedJson);
  EXPECT_EQ(Err(R"({"command":"ping","x":[1,2,]})"), DecodeError::kMalformedJson);
  EXPECT_EQ(Err(R"({"command":"ping","x":"\q"})"), DecodeError::kMalformedJson);
  EXPECT_EQ(Err("{\"command\":\"ping\x01\"}"), DecodeError::kMalformedJson);  // raw control char
  EXPECT_EQ(Err("\xFF{}"), DecodeError::kMalformedJson);
}

TEST_F(DecodeTest, HugeNestingIsMalformed) {
  std::string deep =
      R"({"command":"ping","x":)" + std::string(20000, '[') + std::string(20000, ']') + "}";
  EXPECT_EQ(Err(deep), DecodeError::kMalformedJson);
  // Moderate nesting (well under Go's 10000 limit) in an ignored field is fine.
  std::string ok =
      R"({"command":"ping","x":)" + std::string(500, '[') + std::string(500, ']') + "}";
  EXPECT_EQ(Ok(ok).type, CommandType::kPing);
}

TEST_F(DecodeTest, DoesNotReadPastCallerBuffer) {
  // The frame is a prefix of a larger buffer; the bytes after it must not be seen.
  const std::string buf = R"({"command":"ping"}{"command":"subscribe"})";
  auto c = Ok(std::string_view(buf).substr(0, 18));
  EXPECT_EQ(c.type, CommandType::kPing);
  EXPECT_EQ(Err(std::string_view(buf).substr(0, 17)), DecodeError::kMalformedJson);
}

TEST_F(DecodeTest, NotAnObject) {
  EXPECT_EQ(Err("[]"), DecodeError::kNotAnObject);
  EXPECT_EQ(Err(R"(["command","ping"])"), DecodeError::kNotAnObject);
  EXPECT_EQ(Err(R"("ping")"), DecodeError::kNotAnObject);
  EXPECT_EQ(Err("42"), DecodeError::kNotAnObject);
  EXPECT_EQ(Err("null"), DecodeError::kNotAnObject);
  EXPECT_EQ(Err("true"), DecodeError::kNotAnObject);
}

TEST_F(DecodeTest, MissingCommand) {
  EXPECT_EQ(Err("{}"), DecodeError::kMissingCommand);
  EXPECT_EQ(Err(R"({"identifier":"x","data":"y"})"), DecodeError::kMissingCommand);
}

TEST_F(DecodeTest, BadFieldTypes) {
  EXPECT_EQ(Err(R"({"command":"subscribe","identifier":{"channel":"A"}})"), DecodeError::kBadField);
  EXPECT_EQ(Err(R"({"command":"subscribe","identifier":42})"), DecodeError::kBadField);
  EXPECT_EQ(Err(R"({"command":"subscribe","identifier":["x"]})"), DecodeError::kBadField);
  EXPECT_EQ(Err(R"({"command":1})"), DecodeError::kBadField);
  EXPECT_EQ(Err(R"({"command":true,"identifier":"x"})"), DecodeError::kBadField);
  // A bad type anywhere fails the whole frame, as json.Unmarshal does.
  EXPECT_EQ(Err(R"({"identifier":5})"), DecodeError::kBadField);
}

TEST_F(DecodeTest, MessageDataMustBeString) {
  EXPECT_EQ(Err(R"({"command":"message","identifier":"x","data":{"action":"speak"}})"),
            DecodeError::kDataNotString);
  EXPECT_EQ(Err(R"({"command":"message","identifier":"x","data":1})"), DecodeError::kDataNotString);
  EXPECT_EQ(Err(R"({"command":"message","identifier":"x","data":null})"),
            DecodeError::kDataNotString);
  EXPECT_EQ(Err(R"({"command":"message","identifier":"x"})"), DecodeError::kDataNotString);
  // A later null resets the interface{} data field.
  EXPECT_EQ(Err(R"({"command":"message","identifier":"x","data":"a","data":null})"),
            DecodeError::kDataNotString);
  auto c = Ok(R"({"command":"message","identifier":"x","data":""})");
  EXPECT_TRUE(c.has_data);
  EXPECT_EQ(c.data, "");
}

TEST_F(DecodeTest, DecoderIsReusableAcrossSizes) {
  std::string big =
      R"({"command":"message","identifier":"x","data":")" + std::string(100000, 'a') + "\"}";
  EXPECT_EQ(Ok(big).data.size(), 100000u);
  EXPECT_EQ(Ok(R"({"command":"ping"})").type, CommandType::kPing);
  EXPECT_EQ(Err(R"({"command":"message","identifier":"x"})"), DecodeError::kDataNotString);
  EXPECT_EQ(Ok(R"({"command":"message","identifier":"x","data":"y"})").data, "y");
}

TEST(DecodeErrorNameTest, AllNamed) {
  EXPECT_STREQ(DecodeErrorName(DecodeError::kMalformedJson), "malformed_json");
  EXPECT_STREQ(DecodeErrorName(DecodeError::kNotAnObject), "not_an_object");
  EXPECT_STREQ(DecodeErrorName(DecodeError::kMissingCommand), "missing_command");
  EXPECT_STREQ(DecodeErrorName(DecodeError::kBadField), "bad_field");
  EXPECT_STREQ(DecodeErrorName(DecodeError::kDataNotString), "data_not_string");
}

// ---------------------------------------------------------------------------------------------
// Encoders (expected strings from spec Appendix A / Go's json.Marshal)

TEST(EncodeTest, Welcome) {
  EXPECT_EQ(EncodeWelcome("Vxn3abc"), R"({"type":"welcome","sid":"Vxn3abc"})");
  EXPECT_EQ(EncodeWelcome(""), R"({"type":"welcome"})");  // omitempty
}

TEST(EncodeTest, Ping) {
  EXPECT_EQ(EncodePing(1700000000), R"({"type":"ping","message":1700000000})");
  EXPECT_EQ(EncodePing(1700000000123), R"({"type":"ping","message":1700000000123})");
  EXPECT_EQ(EncodePing(0), R"({"type":"ping","message":0})");
  EXPECT_EQ(EncodePing(-5), R"({"type":"ping","message":-5})");
}

TEST(EncodeTest, Pong) { EXPECT_EQ(EncodePong(), R"({"type":"pong"})"); }

TEST(EncodeTest, Disconnect) {
  EXPECT_EQ(EncodeDisconnect("server_restart", true),
            R"({"type":"disconnect","reason":"server_restart","reconnect":true})");
  EXPECT_EQ(EncodeDisconnect("unauthorized", false),
            R"({"type":"disconnect","reason":"unauthorized","reconnect":false})");
  EXPECT_EQ(EncodeDisconnect("", false), R"({"type":"disconnect","reason":"","reconnect":false})");
}

TEST(EncodeTest, ConfirmReject) {
  EXPECT_EQ(
      EncodeConfirm(R"({"channel":"$pubsub","stream_name":"chat"})"),
      R"({"type":"confirm_subscription","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"chat\"}"})");
  EXPECT_EQ(EncodeReject(R"({"channel":"X"})"),
            R"({"type":"reject_subscription","identifier":"{\"channel\":\"X\"}"})");
  EXPECT_EQ(EncodeConfirm(""), R"({"type":"confirm_subscription"})");
}

TEST(EncodeTest, Broadcast) {
  EXPECT_EQ(EncodeBroadcast(R"({"channel":"ChatChannel","id":42})", R"({"text":"hi"})"),
            R"({"identifier":"{\"channel\":\"ChatChannel\",\"id\":42}","message":{"text":"hi"}})");
  EXPECT_EQ(EncodeBroadcast("", R"("x")"), R"({"message":"x"})");
}

TEST(EncodeTest, BroadcastSizeMatchesWrite) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"channel":"A<b>&"})", R"({"t":1})"},
      {"", "1"},
      {"ctl\x01\x1f\b\f\t", "null"},
      {"bad\xFF\xC3utf8\xE2\x80\xA8", R"("s")"},
      {"\xF0\x9F\x98\x80 emoji", "[]"},
  };
  for (const auto& [id, msg] : cases) {
    const size_t n = BroadcastSize(id, msg);
    std::string buf(n + 8, '#');
    WriteBroadcast(buf.data(), id, msg);
    EXPECT_EQ(buf.substr(n), "########") << "wrote past BroadcastSize for " << id;
    EXPECT_EQ(buf.substr(0, n), EncodeBroadcast(id, msg));
    std::string expected = "{";
    if (!id.empty()) {
      expected += "\"identifier\":";
      AppendJsonString(expected, id);
      expected += ",";
    }
    expected += "\"message\":" + msg + "}";
    EXPECT_EQ(buf.substr(0, n), expected);
  }
}

std::string Json(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  EXPECT_EQ(out.size(), JsonStringSize(s));
  return out;
}

TEST(EscapeTest, Basic) {
  EXPECT_EQ(Json(""), R"("")");
  EXPECT_EQ(Json("plain text 123 ~/\x7f"), "\"plain text 123 ~/\x7f\"");  // '/' and DEL unescaped
  EXPECT_EQ(Json(R"(a"b\c)"), R"("a\"b\\c")");
}

TEST(EscapeTest, ControlCharacters) {
  EXPECT_EQ(Json("\n\r\t"), R"("\n\r\t")");
  EXPECT_EQ(Json("\b\f"), R"("\b\f")");  // Go >= 1.22
  EXPECT_EQ(Json("\x01\x1f"s), R"("\u0001\u001f")");
  EXPECT_EQ(Json("a\0b"s), R"("a\u0000b")");
  EXPECT_EQ(Json("\x0b"), R"("\u000b")");
}

TEST(EscapeTest, HtmlCharacters) {
  EXPECT_EQ(Json("<a href='x'>&</a>"), R"("\u003ca href='x'\u003e\u0026\u003c/a\u003e")");
}

TEST(EscapeTest, LineSeparators) {
  EXPECT_EQ(Json("a\xE2\x80\xA8"
                 "b\xE2\x80\xA9"),
            R"("a\u2028b\u2029")");
  EXPECT_EQ(Json("\xE2\x80\xA7"), "\"\xE2\x80\xA7\"");  // U+2027 is left alone
}

TEST(EscapeTest, ValidUtf8Untouched) {
  EXPECT_EQ(Json("\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80"),
            "\"\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\"");
}

TEST(EscapeTest, InvalidUtf8BecomesReplacementPerByte) {
  EXPECT_EQ(Json("a\xFF"
                 "b"),
            R"("a\ufffdb")");
  EXPECT_EQ(Json("\xC3"), R"("\ufffd")");                                // truncated 2-byte
  EXPECT_EQ(Json("\xE2\x82"), R"("\ufffd\ufffd")");                      // truncated 3-byte
  EXPECT_EQ(Json("\xC0\xAF"), R"("\ufffd\ufffd")");                      // overlong
  EXPECT_EQ(Json("\xED\xA0\x80"), R"("\ufffd\ufffd\ufffd")");            // UTF-16 surrogate
  EXPECT_EQ(Json("\xF4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
  EXPECT_EQ(Json("\x80x"), R"("\ufffdx")");                              // stray continuation
}

// ---------------------------------------------------------------------------------------------
// MessageEncoder: broadcast data -> message JSON (spec §5 item 18)

TEST(MessageJsonTest, ValidJsonPassesThrough) {
  MessageEncoder enc;
  EXPECT_EQ(enc.MessageJson(R"({"text":"hi","b":[1,2]})"), R"({"text":"hi","b":[1,2]})");
  EXPECT_EQ(enc.MessageJson("[1, \"a\"]"), "[1, \"a\"]");
  EXPECT_EQ(enc.MessageJson("42"), "42");
  EXPECT_EQ(enc.MessageJson("-1.5e3"), "-1.5e3");
  EXPECT_EQ(enc.MessageJson("true"), "true");
  EXPECT_EQ(enc.MessageJson(R"("quoted")"), R"("quoted")");
  EXPECT_EQ(enc.MessageJson(R"({"html":"<b>"})"), R"({"html":"<b>"})");  // not re-encoded
}

TEST(MessageJsonTest, WhitespaceTrimmed) {
  MessageEncoder enc;
  EXPECT_EQ(enc.MessageJson(" \n\t{\"a\": 1}\r\n "), R"({"a": 1})");
  EXPECT_EQ(enc.MessageJson("  7 "), "7");
}

TEST(MessageJsonTest, NonJsonBecomesString) {
  MessageEncoder enc;
  EXPECT_EQ(enc.MessageJson("hello world"), R"("hello world")");
  EXPECT_EQ(enc.MessageJson("null"), R"("null")");
  EXPECT_EQ(enc.MessageJson(" null "), R"(" null ")");
  EXPECT_EQ(enc.MessageJson(R"({"a":1)"), R"("{\"a\":1")");
  EXPECT_EQ(enc.MessageJson(R"({"a":1} x)"), R"("{\"a\":1} x")");
  EXPECT_EQ(enc.MessageJson(R"([1,2,])"), R"("[1,2,]")");
  EXPECT_EQ(enc.MessageJson("tru"), R"("tru")");
  EXPECT_EQ(enc.MessageJson(""), R"("")");
  EXPECT_EQ(enc.MessageJson("   "), R"("   ")");
  EXPECT_EQ(enc.MessageJson("<b>&"), R"("\u003cb\u003e\u0026")");
  EXPECT_EQ(enc.MessageJson("line\nbreak"), R"("line\nbreak")");
}

TEST(MessageJsonTest, InvalidUtf8InsideJsonIsRepaired) {
  MessageEncoder enc;
  EXPECT_EQ(enc.MessageJson("{\"a\":\"x\xFFy\"}"), "{\"a\":\"x\xEF\xBF\xBDy\"}");
  // Not JSON at all: escaped as a string, byte by byte.
  EXPECT_EQ(enc.MessageJson("x\xFF"), R"("x\ufffd")");
}

TEST(MessageJsonTest, ReusableAfterLargeInput) {
  MessageEncoder enc;
  std::string big = "[" + std::string(50000, '1') + "]";
  EXPECT_EQ(enc.MessageJson("[\"" + std::string(50000, 'x') + "\"]").size(), 50004u);
  EXPECT_EQ(enc.MessageJson("{}"), "{}");
  EXPECT_EQ(enc.MessageJson("nope"), R"("nope")");
}

// ---------------------------------------------------------------------------------------------
// BroadcastParser

class BroadcastTest : public ::testing::Test {
 protected:
  std::vector<BroadcastItem> Ok(std::string_view body) {
    auto r = parser_.Parse(body);
    EXPECT_TRUE(r.ok()) << "body: " << body
                        << " error: " << (r.ok() ? "" : BroadcastErrorName(r.error()));
    return r.ok() ? r.value() : std::vector<BroadcastItem>{};
  }
  BroadcastError Err(std::string_view body) {
    auto r = parser_.Parse(body);
    EXPECT_FALSE(r.ok()) << "body unexpectedly parsed: " << body;
    return r.ok() ? BroadcastError::kMalformedJson : r.error();
  }
  static const Publication& Pub(const std::vector<BroadcastItem>& items, size_t i) {
    static const Publication kEmpty;
    if (i >= items.size() || !std::holds_alternative<Publication>(items[i])) {
      ADD_FAILURE() << "item " << i << " is not a publication";
      return kEmpty;
    }
    return std::get<Publication>(items[i]);
  }
  BroadcastParser parser_;
};

TEST_F(BroadcastTest, Single) {
  auto items = Ok(R"({"stream":"chat_42","data":"{\"text\":\"hi\"}"})");
  ASSERT_EQ(items.size(), 1u);
  const auto& p = Pub(items, 0);
  EXPECT_EQ(p.stream, "chat_42");
  EXPECT_EQ(p.data, R"({"text":"hi"})");
  EXPECT_EQ(p.exclude_socket, "");
  EXPECT_FALSE(p.transient);
  EXPECT_EQ(p.broadcast_type, "");
}

TEST_F(BroadcastTest, SingleWithoutDataOrNullData) {
  EXPECT_EQ(Pub(Ok(R"({"stream":"s"})"), 0).data, "");
  EXPECT_EQ(Pub(Ok(R"({"stream":"s","data":null})"), 0).data, "");
}

TEST_F(BroadcastTest, Meta) {
  auto items = Ok(
      R"({"stream":"s","data":"d","meta":{"exclude_socket":"sid1","transient":true,"broadcast_type":"presence","unknown":{"x":1}}})");
  ASSERT_EQ(items.size(), 1u);
  const auto& p = Pub(items, 0);
  EXPECT_EQ(p.exclude_socket, "sid1");
  EXPECT_TRUE(p.transient);
  EXPECT_EQ(p.broadcast_type, "presence");
  EXPECT_FALSE(Pub(Ok(R"({"stream":"s","data":"d","meta":null})"), 0).transient);
  EXPECT_FALSE(Pub(Ok(R"({"stream":"s","data":"d","meta":{"transient":null}})"), 0).transient);
}

TEST_F(BroadcastTest, KeysCaseInsensitiveAndExtraIgnored) {
  auto items = Ok(R"({"Stream":"s","DATA":"d","extra":[1,2],"Meta":{"Transient":true}})");
  const auto& p = Pub(items, 0);
  EXPECT_EQ(p.stream, "s");
  EXPECT_EQ(p.data, "d");
  EXPECT_TRUE(p.transient);
}

TEST_F(BroadcastTest, BatchKeepsOrder) {
  auto items = Ok(
      R"([{"stream":"a","data":"1"},{"stream":"b","data":"2","meta":{"exclude_socket":"x"}},{"stream":"a","data":"3"}])");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(Pub(items, 0).stream, "a");
  EXPECT_EQ(Pub(items, 0).data, "1");
  EXPECT_EQ(Pub(items, 1).stream, "b");
  EXPECT_EQ(Pub(items, 1).exclude_socket, "x");
  EXPECT_EQ(Pub(items, 2).data, "3");
}

TEST_F(BroadcastTest, BatchSkipsLaterEmptyStreams) {
  auto items =
      Ok(R"([{"stream":"a","data":"1"},{"data":"2"},{"stream":"","data":"3"},{"stream":"c"}])");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(Pub(items, 0).stream, "a");
  EXPECT_EQ(Pub(items, 1).stream, "c");
}

TEST_F(BroadcastTest, BatchErrors) {
  EXPECT_EQ(Err(R"([{"stream":"a","data":"1"},42])"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"([{"stream":"a","data":"1"},null])"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"([{"stream":"a","data":"1"},{"stream":"b","data":{"x":1}}])"),
            BroadcastError::kBadField);
  EXPECT_EQ(Err(R"([{"stream":"a","data":{"x":1}}])"), BroadcastError::kBadField);
}

TEST_F(BroadcastTest, RemoteDisconnect) {
  auto items = Ok(
      R"({"command":"disconnect","payload":{"identifier":"{\"current_user\":\"1\"}","reconnect":true}})");
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<RemoteDisconnect>(items[0]));
  const auto& d = std::get<RemoteDisconnect>(items[0]);
  EXPECT_EQ(d.identifier, R"({"current_user":"1"})");
  EXPECT_TRUE(d.reconnect);

  items = Ok(R"({"command":"disconnect","payload":{"identifier":"u"}})");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_FALSE(std::get<RemoteDisconnect>(items[0]).reconnect);
}

TEST_F(BroadcastTest, RemoteDisconnectBadPayload) {
  EXPECT_EQ(Err(R"({"command":"disconnect"})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"command":"disconnect","payload":"x"})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"command":"disconnect","payload":{"identifier":1}})"),
            BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"command":"disconnect","payload":{"identifier":"u","reconnect":"yes"}})"),
            BroadcastError::kBadField);
}

TEST_F(BroadcastTest, UnknownCommand) {
  EXPECT_EQ(Err(R"({"command":"restart","payload":{}})"), BroadcastError::kUnknownCommand);
}

TEST_F(BroadcastTest, PublicationWinsOverCommand) {
  auto items = Ok(R"({"stream":"s","data":"d","command":"disconnect"})");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(Pub(items, 0).stream, "s");
}

TEST_F(BroadcastTest, InvalidShapes) {
  EXPECT_EQ(Err("{}"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err(R"({"stream":"","data":"d"})"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err(R"({"data":"d"})"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err(R"({"command":""})"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err("[]"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err(R"([1,2])"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err(R"(["a"])"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err(R"([{"data":"x"},{"stream":"a"}])"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err("\"str\""), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err("42"), BroadcastError::kUnknownShape);
  EXPECT_EQ(Err("null"), BroadcastError::kUnknownShape);
}

TEST_F(BroadcastTest, DataNotAString) {
  EXPECT_EQ(Err(R"({"stream":"s","data":{"text":"hi"}})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"stream":"s","data":42})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"stream":"s","data":["x"]})"), BroadcastError::kBadField);
}

TEST_F(BroadcastTest, BadFieldTypes) {
  EXPECT_EQ(Err(R"({"stream":1,"data":"d"})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"stream":"s","meta":"x"})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"stream":"s","meta":{"exclude_socket":1}})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"stream":"s","meta":{"transient":"yes"}})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"stream":"s","meta":{"broadcast_type":false}})"), BroadcastError::kBadField);
  EXPECT_EQ(Err(R"({"command":5})"), BroadcastError::kBadField);
}

TEST_F(BroadcastTest, MalformedJson) {
  EXPECT_EQ(Err(""), BroadcastError::kMalformedJson);
  EXPECT_EQ(Err(R"({"stream":"s","data":"d")"), BroadcastError::kMalformedJson);
  EXPECT_EQ(Err(R"({"stream":"s"} trailing)"), BroadcastError::kMalformedJson);
  EXPECT_EQ(Err("not json"), BroadcastError::kMalformedJson);
}

TEST_F(BroadcastTest, InvalidUtf8InDataIsRepaired) {
  auto items = Ok("{\"stream\":\"s\",\"data\":\"a\xFE\"}");
  EXPECT_EQ(Pub(items, 0).data, "a\xEF\xBF\xBD");
}

TEST(BroadcastErrorNameTest, AllNamed) {
  EXPECT_STREQ(BroadcastErrorName(BroadcastError::kMalformedJson), "malformed_json");
  EXPECT_STREQ(BroadcastErrorName(BroadcastError::kUnknownShape), "unknown_shape");
  EXPECT_STREQ(BroadcastErrorName(BroadcastError::kBadField), "bad_field");
  EXPECT_STREQ(BroadcastErrorName(BroadcastError::kUnknownCommand), "unknown_command");
}

// ---------------------------------------------------------------------------------------------
// Extended protocol: history requests and frames

TEST(HistoryRequestTest, ParsesSinceAndPositionsLikeGo) {
  HistoryRequest r;
  ASSERT_TRUE(ParseHistoryRequest(
      R"({"since":1681828329,"streams":{"chat_42":{"offset":32,"epoch":"x123"},"b":{"epoch":"e"}}})",
      &r));
  EXPECT_EQ(r.since, 1681828329);
  EXPECT_TRUE(r.has_streams);
  ASSERT_EQ(r.streams.size(), 2u);
  ASSERT_NE(r.Find("chat_42"), nullptr);
  EXPECT_EQ(r.Find("chat_42")->offset, 32u);
  EXPECT_EQ(r.Find("chat_42")->epoch, "x123");
  EXPECT_EQ(r.Find("b")->offset, 0u);
  EXPECT_EQ(r.Find("c"), nullptr);
  EXPECT_FALSE(r.empty());
  // Keys match case-insensitively, null leaves a field unset, unknown keys are ignored, a
  // repeated stream overwrites.
  ASSERT_TRUE(ParseHistoryRequest(
      R"({"SINCE":5,"x":[1],"Streams":{"s":{"Offset":1,"EPOCH":null},"s":{"offset":2}}})", &r));
  EXPECT_EQ(r.since, 5);
  ASSERT_EQ(r.streams.size(), 1u);
  EXPECT_EQ(r.Find("s")->offset, 2u);
  ASSERT_TRUE(ParseHistoryRequest(R"({"since":null,"streams":null})", &r));
  EXPECT_TRUE(r.empty());
  ASSERT_TRUE(ParseHistoryRequest(R"({})", &r));
  EXPECT_TRUE(r.empty());
  ASSERT_TRUE(ParseHistoryRequest(R"({"streams":{}})", &r));
  EXPECT_FALSE(r.empty());
}

TEST(HistoryRequestTest, RejectsWhatGoCannotUnmarshal) {
  HistoryRequest r;
  for (const char* bad :
       {"", "{", R"("abc")", "42", "[]", R"({"since":"1"})", R"({"since":1.5})",
        R"({"since":99999999999999999999})", R"({"streams":[]})", R"({"streams":{"s":1}})",
        R"({"streams":{"s":{"offset":-1}}})", R"({"streams":{"s":{"offset":"1"}}})",
        R"({"streams":{"s":{"epoch":1}}})"}) {
    EXPECT_FALSE(ParseHistoryRequest(bad, &r)) << bad;
  }
}

TEST(EncodeExtTest, HistoryRepliesRestoredWelcomeAndPositionedBroadcast) {
  EXPECT_EQ(EncodeConfirmHistory(R"({"channel":"A"})"),
            R"({"type":"confirm_history","identifier":"{\"channel\":\"A\"}"})");
  EXPECT_EQ(EncodeRejectHistory("x"), R"({"type":"reject_history","identifier":"x"})");
  EXPECT_EQ(
      EncodeRestoredWelcome("new", {R"({"channel":"A"})", "b"}),
      R"({"type":"welcome","sid":"new","restored":true,"restored_ids":["{\"channel\":\"A\"}","b"]})");
  EXPECT_EQ(EncodeRestoredWelcome("new", {}), R"({"type":"welcome","sid":"new","restored":true})");
  EXPECT_EQ(
      EncodeBroadcastExt("id", R"({"a":1})", "chat_42", "y2Qa", 43),
      R"({"identifier":"id","message":{"a":1},"stream_id":"chat_42","epoch":"y2Qa","offset":43})");
  EXPECT_EQ(EncodeBroadcastExt("id", "1", "s<", "", 0),
            R"({"identifier":"id","message":1,"stream_id":"s\u003c"})");
}

}  // namespace
}  // namespace cable::protocol
