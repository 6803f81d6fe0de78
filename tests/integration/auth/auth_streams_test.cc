// Standalone mode through the real binary: --noauth / --public / --norpc, $pubsub signed and
// public streams, Turbo Streams, whisper (spec §1 rows "Signed streams", "Turbo Streams",
// "Noauth / public mode / norpc", "Whisper"; §5 items 12, 21).
#include <string>

#include "auth_util.h"
#include "core_fixture.h"

namespace cable::itcore {
namespace {

using cable::itauth::SignStream;

const std::string kStreamsKey = "streams-key";

std::string Signed(const std::string& channel, const std::string& field,
                   const std::string& signed_name) {
  return "{\"channel\":" + JsonString(channel) + ",\"" + field + "\":" + JsonString(signed_name) +
         "}";
}
std::string PubsubSigned(const std::string& stream, const std::string& key) {
  return Signed("$pubsub", "signed_stream_name", SignStream(stream, key));
}
std::string PubsubPublic(const std::string& stream) {
  return "{\"channel\":\"$pubsub\",\"stream_name\":" + JsonString(stream) + "}";
}

class StreamsTest : public CoreTest {
 protected:
  void ExpectRejected(WsClient& ws, const std::string& identifier) {
    ASSERT_TRUE(ws.Subscribe(identifier));
    WsFrame f = ws.NextMessage();
    ASSERT_EQ(f.opcode, 1);
    EXPECT_EQ(f.payload, RejectFrame(identifier));
  }
  // Next message must be exactly `frame`.
  void ExpectNext(WsClient& ws, const std::string& frame) {
    WsFrame f = ws.NextMessage();
    ASSERT_EQ(f.opcode, 1) << "expected " << frame;
    EXPECT_EQ(f.payload, frame);
  }
};

TEST_F(StreamsTest, PublicModeNoRpcAtAll) {
  StartServer({"--public"});
  WsClient ws;
  ConnectWelcome(ws, "sid-pub");
  const std::string id = PubsubPublic("chat");
  SubscribeConfirmed(ws, id);
  // --public makes broadcasting unauthenticated even though nothing else was configured.
  Broadcast(Publication("chat", R"({"text":"hi"})"));
  ExpectNext(ws, MessageFrame(id, R"({"text":"hi"})"));
  EXPECT_TRUE(rpc_.connects().empty());
  EXPECT_TRUE(rpc_.commands().empty());
}

TEST_F(StreamsTest, SignedStreamsVerifiedPublicOnlyWhenEnabled) {
  StartServer({"--streams_secret", kStreamsKey});
  WsClient ws;
  ConnectWelcome(ws, "sid-signed");  // Connect RPC (no JWT configured)
  ExpectRejected(ws, PubsubSigned("chat", "wrong-key"));
  ExpectRejected(ws, PubsubPublic("chat"));
  ExpectRejected(ws, R"({"channel":"$pubsub","signed_stream_name":"garbage"})");
  const std::string id = PubsubSigned("chat", kStreamsKey);
  SubscribeConfirmed(ws, id);
  Broadcast(Publication("chat", R"({"n":1})"));
  ExpectNext(ws, MessageFrame(id, R"({"n":1})"));
  EXPECT_TRUE(rpc_.commands().empty()) << "built-in channels never reach the app";
}

TEST_F(StreamsTest, PublicStreamsFlagAllowsUnsignedNames) {
  StartServer({"--public_streams", "--secret", kStreamsKey, "--broadcast_key", "none"});
  WsClient ws;
  ConnectWelcome(ws, "sid-ps");
  const std::string pub = PubsubPublic("room");
  SubscribeConfirmed(ws, pub);
  const std::string sig = PubsubSigned("room", kStreamsKey);  // --secret used directly
  SubscribeConfirmed(ws, sig);
  Broadcast(Publication("room", R"({"n":2})"));
  // One frame per identifier (spec §5 item 22), in subscription order.
  ExpectNext(ws, MessageFrame(pub, R"({"n":2})"));
  ExpectNext(ws, MessageFrame(sig, R"({"n":2})"));
}

TEST_F(StreamsTest, UnsubscribeIsLocal) {
  StartServer({"--public"});
  WsClient ws;
  ConnectWelcome(ws, "sid-unsub");
  const std::string id = PubsubPublic("chat");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText("{\"command\":\"unsubscribe\",\"identifier\":" + JsonString(id) + "}"));
  Barrier(ws);
  Broadcast(Publication("chat", R"({"gone":true})"));
  Barrier(ws);  // the broadcast would have been queued before the pong
  EXPECT_TRUE(rpc_.commands().empty());
}

TEST_F(StreamsTest, TurboStreamsSignedName) {
  const std::string turbo_key = "turbo-key";
  StartServer({"--public", "--turbo_streams", "--turbo_streams_secret", turbo_key});
  WsClient ws;
  ConnectWelcome(ws, "sid-turbo");
  // As turbo-rails builds it: the signed name of the stream "gid://app/Room/1".
  const std::string id = Signed("Turbo::StreamsChannel", "signed_stream_name",
                                SignStream("gid://app/Room/1", turbo_key));
  SubscribeConfirmed(ws, id);
  ExpectRejected(ws, Signed("Turbo::StreamsChannel", "signed_stream_name",
                            SignStream("gid://app/Room/2", kStreamsKey)));
  Broadcast(Publication("gid://app/Room/1", "<turbo-stream></turbo-stream>"));
  // Plain-text data becomes a JSON string, HTML-escaped as Go's encoder does.
  ExpectNext(ws, MessageFrame(id, R"("\u003cturbo-stream\u003e\u003c/turbo-stream\u003e")"));
}

TEST_F(StreamsTest, CableReadyIdentifierField) {
  StartServer({"--public", "--cable_ready", "--secret", kStreamsKey});
  WsClient ws;
  ConnectWelcome(ws, "sid-cr");
  const std::string id = Signed("CableReady::Stream", "identifier", SignStream("cr", kStreamsKey));
  SubscribeConfirmed(ws, id);
}

TEST_F(StreamsTest, TurboDisabledGoesToRpc) {
  StartServer({});
  WsClient ws;
  ConnectWelcome(ws, "sid-noturbo");
  const std::string id = Signed("Turbo::StreamsChannel", "signed_stream_name", "x--y");
  SubscribeConfirmed(ws, id);  // the demo app confirms everything
  EXPECT_EQ(rpc_.commands().size(), 1u);
}

TEST_F(StreamsTest, WhisperReachesOthersNotSender) {
  StartServer({"--public", "--streams_whisper"});
  const std::string id = PubsubPublic("typing");
  WsClient a;
  WsClient b;
  ConnectWelcome(a, "sid-a");
  ConnectWelcome(b, "sid-b");
  SubscribeConfirmed(a, id);
  SubscribeConfirmed(b, id);
  ASSERT_TRUE(a.SendText("{\"command\":\"whisper\",\"identifier\":" + JsonString(id) +
                         ",\"data\":{\"event\":\"typing\",\"n\":[1,2]}}"));
  ExpectNext(b, MessageFrame(id, R"({"event":"typing","n":[1,2]})"));
  // Publications keep one order: had the whisper come back to A, it would precede this.
  Broadcast(Publication("typing", R"({"after":true})"));
  ExpectNext(a, MessageFrame(id, R"({"after":true})"));
  ExpectNext(b, MessageFrame(id, R"({"after":true})"));
}

TEST_F(StreamsTest, WhisperIgnoredWithoutPermission) {
  StartServer({"--public"});  // no --streams_whisper: no $w in istate
  const std::string id = PubsubPublic("typing");
  WsClient a;
  WsClient b;
  ConnectWelcome(a, "sid-a");
  ConnectWelcome(b, "sid-b");
  SubscribeConfirmed(a, id);
  SubscribeConfirmed(b, id);
  ASSERT_TRUE(a.SendText("{\"command\":\"whisper\",\"identifier\":" + JsonString(id) +
                         ",\"data\":{\"event\":\"typing\"}}"));
  Barrier(a);
  Broadcast(Publication("typing", R"({"after":true})"));
  ExpectNext(b, MessageFrame(id, R"({"after":true})"));
}

TEST_F(StreamsTest, WhisperAllowedByAppIstate) {
  rpc_.SetCommandHandler([](const anycable::CommandMessage& req, const cable::tools::Metadata& m,
                            anycable::CommandResponse* resp) {
    grpc::Status st = ScriptedRpcServer::DemoCommand(req, m, resp);
    if (req.command() == "subscribe") (*resp->mutable_env()->mutable_istate())["$w"] = "room";
    return st;
  });
  StartServer({});
  const std::string id = WsClient::Identifier("RoomChannel", {{"stream", "room"}});
  WsClient a;
  WsClient b;
  ConnectWelcome(a, "sid-a");
  ConnectWelcome(b, "sid-b");
  SubscribeConfirmed(a, id);
  SubscribeConfirmed(b, id);
  ASSERT_TRUE(a.SendText("{\"command\":\"whisper\",\"identifier\":" + JsonString(id) +
                         ",\"data\":\"psst\"}"));
  ExpectNext(b, MessageFrame(id, JsonString("psst")));
  EXPECT_EQ(rpc_.commands().size(), 2u) << "whisper is not an RPC command";
}

TEST_F(StreamsTest, NoauthIdentifiersAreTheSid) {
  StartServer({"--noauth"});
  WsClient ws;
  ConnectWelcome(ws, "sid-noauth");
  SubscribeConfirmed(ws, WsClient::Identifier("ChatChannel"));
  EXPECT_TRUE(rpc_.connects().empty());
  auto commands = rpc_.commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].request.connection_identifiers(), R"({"sid":"sid-noauth"})");
}

TEST_F(StreamsTest, NorpcRefusesConnectWithoutNoauth) {
  StartServer({"--norpc"});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
  WsFrame f = ws.NextMessage();
  EXPECT_EQ(f.payload, R"({"type":"disconnect","reason":"unauthorized","reconnect":false})");
  EXPECT_EQ(ws.WaitClose().close_code(), 1000);
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(StreamsTest, NorpcRejectsAppChannelsServesBuiltins) {
  StartServer({"--norpc", "--public"});
  WsClient ws;
  ConnectWelcome(ws, "sid-norpc");
  ExpectRejected(ws, WsClient::Identifier("ChatChannel"));
  SubscribeConfirmed(ws, PubsubPublic("chat"));
  EXPECT_EQ(server_.Stop(), 0);
  EXPECT_TRUE(rpc_.commands().empty());
  EXPECT_TRUE(rpc_.disconnects().empty());
}

}  // namespace
}  // namespace cable::itcore
