// JWT identification through the real binary (spec §1 "JWT identification", §5 item 3).
#include <ctime>
#include <string>

#include "auth_util.h"
#include "core_fixture.h"

namespace cable::itcore {
namespace {

using cable::itauth::B64Url;
using cable::itauth::Jwt;

const std::string kKey = "jwt-test-secret";
const std::string kExt = R"({"user_id":"42"})";

std::string ValidPayload() {
  return "{\"ext\":" + JsonString(kExt) + ",\"exp\":" + std::to_string(std::time(nullptr) + 3600) +
         "}";
}
std::string ValidToken() { return Jwt(R"({"alg":"HS256","typ":"JWT"})", ValidPayload(), kKey); }

const char kUnauthorized[] = R"({"type":"disconnect","reason":"unauthorized","reconnect":false})";

class JwtTest : public CoreTest {
 protected:
  // Connects with `token` in the query and expects `frame` then close 1000 "Auth Failed".
  void ExpectRefused(const std::string& token, const std::string& frame) {
    WsClient ws;
    ASSERT_EQ(ws.Connect(server_.port(), "/cable?jid=" + token), 101);
    WsFrame f = ws.NextMessage();
    ASSERT_EQ(f.opcode, 1) << token;
    EXPECT_EQ(f.payload, frame);
    WsFrame close = ws.WaitClose();
    EXPECT_EQ(close.close_code(), 1000);
    EXPECT_EQ(close.close_reason(), "Auth Failed");
    EXPECT_TRUE(rpc_.connects().empty()) << "an invalid token must never fall back to RPC";
  }
};

TEST_F(JwtTest, ValidTokenInQuerySkipsConnectRpcAndCarriesExtIdentifiers) {
  StartServer({"--jwt_secret", kKey});
  WsClient ws;
  ConnectWelcome(ws, "sid-jwt-1", "/cable?jid=" + ValidToken());
  SubscribeConfirmed(ws, WsClient::Identifier("ChatChannel"));
  EXPECT_TRUE(rpc_.connects().empty());
  auto commands = rpc_.commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].request.connection_identifiers(), kExt);
}

TEST_F(JwtTest, ValidTokenInHeaderAndSubprotocolWithSecretFallback) {
  StartServer({"--secret", kKey, "--jwt_param", "token"});
  WsClient by_header;
  ConnectWelcome(by_header, "sid-h", "/cable", {{"X-TOKEN", ValidToken()}});
  WsClient by_protocol;
  ASSERT_EQ(by_protocol.Connect(server_.port(), "/cable", {{"X-Request-ID", "sid-p"}},
                                {"actioncable-v1-json", "anycable-token." + ValidToken()}),
            101);
  // The token subprotocol is consumed, never echoed.
  EXPECT_EQ(by_protocol.response_headers().at("sec-websocket-protocol"), "actioncable-v1-json");
  WsFrame f = by_protocol.NextMessage();
  EXPECT_EQ(f.payload, WelcomeFrame("sid-p"));
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(JwtTest, HeaderWinsOverSubprotocolAndQuery) {
  StartServer({"--jwt_secret", kKey});
  const std::string bad = Jwt(R"({"alg":"HS256"})", ValidPayload(), "other-key");
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?jid=" + bad,
                       {{"X-Request-ID", "sid-order"}, {"X-JID", ValidToken()}},
                       {"actioncable-v1-json", "anycable-token." + bad}),
            101);
  EXPECT_EQ(ws.NextMessage().payload, WelcomeFrame("sid-order"));
  // Subprotocol before query: a bad token offered as subprotocol refuses a good query token.
  WsClient second;
  ASSERT_EQ(second.Connect(server_.port(), "/cable?jid=" + ValidToken(), {},
                           {"actioncable-v1-json", "anycable-token." + bad}),
            101);
  EXPECT_EQ(second.NextMessage().payload, kUnauthorized);
}

TEST_F(JwtTest, Hs512Accepted) {
  StartServer({"--jwt_secret", kKey});
  WsClient ws;
  ConnectWelcome(ws, "sid-512",
                 "/cable?jid=" + Jwt(R"({"alg":"HS512"})", ValidPayload(), kKey, "SHA512"));
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(JwtTest, WrongSignatureIsUnauthorized) {
  StartServer({"--jwt_secret", kKey});
  ExpectRefused(Jwt(R"({"alg":"HS256"})", ValidPayload(), "other-key"), kUnauthorized);
}

TEST_F(JwtTest, AlgNoneIsUnauthorized) {
  StartServer({"--jwt_secret", kKey});
  ExpectRefused(B64Url(R"({"alg":"none"})") + "." + B64Url(ValidPayload()) + ".", kUnauthorized);
}

TEST_F(JwtTest, Rs256HeaderIsUnauthorized) {
  StartServer({"--jwt_secret", kKey});
  ExpectRefused(Jwt(R"({"alg":"RS256"})", ValidPayload(), kKey), kUnauthorized);
}

TEST_F(JwtTest, TamperedPayloadIsUnauthorized) {
  StartServer({"--jwt_secret", kKey});
  std::string token = ValidToken();
  size_t d1 = token.find('.');
  size_t d2 = token.find('.', d1 + 1);
  std::string forged = token.substr(0, d1) + "." +
                       B64Url("{\"ext\":" + JsonString(R"({"user_id":"1"})") + "}") +
                       token.substr(d2);
  ExpectRefused(forged, kUnauthorized);
}

TEST_F(JwtTest, ExpiredTokenGetsTokenExpired) {
  StartServer({"--jwt_secret", kKey});
  std::string payload =
      "{\"ext\":" + JsonString(kExt) + ",\"exp\":" + std::to_string(std::time(nullptr) - 60) + "}";
  ExpectRefused(Jwt(R"({"alg":"HS256"})", payload, kKey),
                R"({"type":"disconnect","reason":"token_expired","reconnect":false})");
}

TEST_F(JwtTest, MissingOrNonStringExtClosesWith1011) {
  StartServer({"--jwt_secret", kKey});
  for (const std::string& payload :
       {std::string(R"({"sub":"42"})"), std::string(R"({"ext":42})")}) {
    WsClient ws;
    ASSERT_EQ(ws.Connect(server_.port(), "/cable?jid=" + Jwt(R"({"alg":"HS256"})", payload, kKey)),
              101);
    WsFrame close = ws.Next();
    EXPECT_EQ(close.opcode, 8) << "no disconnect frame before the close: " << close.payload;
    EXPECT_EQ(close.close_code(), 1011);
  }
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(JwtTest, OversizedTokenRejectedCleanly) {
  StartServer({"--jwt_secret", kKey});
  WsClient big;
  std::string huge(16 * 1024, 'a');
  EXPECT_EQ(big.Connect(server_.port(), "/cable?jid=" + huge), 431);
  // The server is unharmed: a valid token still works.
  WsClient ws;
  ConnectWelcome(ws, "sid-after", "/cable?jid=" + ValidToken());
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(JwtTest, EnforceJwtWithoutTokenIsUnauthorized) {
  StartServer({"--jwt_secret", kKey, "--enforce_jwt"});
  ExpectRefused("", kUnauthorized);
}

TEST_F(JwtTest, NoTokenFallsBackToConnectRpc) {
  StartServer({"--jwt_secret", kKey});
  WsClient ws;
  ConnectWelcome(ws, "sid-rpc", "/cable?user=bob");
  ASSERT_EQ(rpc_.connects().size(), 1u);
}

TEST_F(JwtTest, DisconnectModeAutoSkipsJwtPubsubOnlySessions) {
  const std::string streams_key = "streams-key";
  StartServer({"--jwt_secret", kKey, "--streams_secret", streams_key});
  WsClient builtin_only;
  ConnectWelcome(builtin_only, "sid-builtin", "/cable?jid=" + ValidToken());
  std::string pubsub = "{\"channel\":\"$pubsub\",\"signed_stream_name\":" +
                       JsonString(cable::itauth::SignStream("chat", streams_key)) + "}";
  SubscribeConfirmed(builtin_only, pubsub);
  WsClient with_rpc;
  ConnectWelcome(with_rpc, "sid-rpc-channel", "/cable?jid=" + ValidToken());
  SubscribeConfirmed(with_rpc, WsClient::Identifier("ChatChannel"));
  WsClient via_connect;
  ConnectWelcome(via_connect, "sid-connect", "/cable?user=carol");
  SubscribeConfirmed(via_connect, pubsub);
  EXPECT_EQ(server_.Stop(), 0);
  std::vector<std::string> sids;
  for (const auto& d : rpc_.disconnects()) sids.push_back(d.meta.sid);
  std::sort(sids.begin(), sids.end());
  EXPECT_EQ(sids, (std::vector<std::string>{"sid-connect", "sid-rpc-channel"}));
}

}  // namespace
}  // namespace cable::itcore
