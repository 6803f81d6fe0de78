// Server-Sent Events (--sse; spec Appendix D) through the real binary, as raw HTTP: the stream's
// head, events and their order, authentication and subscription outcomes before the 200,
// Last-Event-ID catch-up with the memory broker, remote disconnect and shutdown, bad input, a
// client that never reads, and a client that goes away.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "auth_util.h"
#include "transports_util.h"

namespace cable::ittransports {
namespace {

using cable::itauth::SignStream;
using cable::test::JsonString;
using cable::tools::ScriptedRpcServer;

std::string Url(const std::string& s) {  // percent-encodes a query value
  std::string out;
  const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class SseTest : public cable::itcore::CoreTest {
 protected:
  int port() { return server_.port(); }
  // Opens a GET stream and expects the 200 head.
  void OpenStream(HttpStream& s, const std::string& target,
                  const std::map<std::string, std::string>& headers = {}) {
    ASSERT_TRUE(s.Get(port(), target, headers));
    ASSERT_TRUE(s.ReadHead()) << server_.Log();
    ASSERT_EQ(s.status, 200) << s.body;
  }
  int StatusOf(const std::string& request) {
    HttpStream s;
    if (!s.Open(port(), request) || !s.ReadHead()) return 0;
    return s.status;
  }
};

const std::string kChat = R"({"channel":"ChatChannel"})";

TEST_F(SseTest, GetChannelStreamsWelcomeConfirmationAndMessages) {
  StartServer({"--sse"});
  HttpStream s;
  OpenStream(s, "/events?channel=ChatChannel&user=alice", {{"X-Request-ID", "sse-1"}});
  EXPECT_EQ(s.headers["content-type"], "text/event-stream; charset=utf-8");
  EXPECT_EQ(s.headers["cache-control"], "private, no-cache, no-store, must-revalidate, max-age=0");
  EXPECT_EQ(s.headers["pragma"], "no-cache");
  EXPECT_EQ(s.headers["expire"], "0");
  EXPECT_EQ(s.headers["x-accel-buffering"], "no");
  EXPECT_EQ(s.headers["x-content-type-options"], "nosniff");
  EXPECT_EQ(s.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(s.headers["access-control-allow-origin"], "*");
  EXPECT_EQ(s.headers["access-control-allow-methods"], "POST, OPTIONS");
  EXPECT_EQ(s.headers["access-control-allow-credentials"], "true");
  EXPECT_TRUE(s.headers.count("x-anycable-version"));

  auto welcome = s.NextEvent();
  ASSERT_TRUE(welcome);
  EXPECT_EQ(welcome->event, "welcome");
  EXPECT_EQ(welcome->data, WelcomeFrame("sse-1"));
  auto confirm = s.NextEvent();
  ASSERT_TRUE(confirm);
  EXPECT_EQ(confirm->event, "confirm_subscription");
  EXPECT_EQ(confirm->data, ConfirmFrame(kChat));

  // GET streams carry only the message; a string message as its text, over several data lines.
  Broadcast(Publication("ChatChannel", R"({"text":"hi"})"));
  Broadcast(Publication("ChatChannel", "\"line one\\nline two\""));
  auto m1 = s.NextData();
  ASSERT_TRUE(m1);
  EXPECT_EQ(m1->data, R"({"text":"hi"})");
  EXPECT_TRUE(m1->id.empty());  // no broker, no position
  auto m2 = s.NextData();
  ASSERT_TRUE(m2);
  EXPECT_EQ(m2->data, "line one\nline two");

  // The app saw an ordinary Connect (with the request's URL) and a subscribe.
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.commands().size() >= 1; }, 5s));
  EXPECT_EQ(rpc_.commands()[0].request.command(), "subscribe");
  EXPECT_EQ(rpc_.commands()[0].request.identifier(), kChat);
  EXPECT_NE(rpc_.connects()[0].request.env().url().find("/events?channel=ChatChannel"),
            std::string::npos);
}

TEST_F(SseTest, PostJsonlSubscribesToEachCommandWithWholeReplies) {
  StartServer({"--sse"});
  const std::string a = R"({"channel":"ChatChannel","stream":"a"})";
  const std::string b = R"({"channel":"ChatChannel","stream":"b"})";
  std::string body = "{\"command\":\"subscribe\",\"identifier\":" + JsonString(a) + "}\n" +
                     "{\"command\":\"subscribe\",\"identifier\":" + JsonString(b) + "}\n";
  HttpStream s;
  ASSERT_TRUE(s.Open(port(), HttpPostRequest("/events?user=bob", body)));
  ASSERT_TRUE(s.ReadHead());
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(s.NextOfType("confirm_subscription")->data, ConfirmFrame(a));
  EXPECT_EQ(s.NextOfType("confirm_subscription")->data, ConfirmFrame(b));
  Broadcast(Publication("b", R"({"n":2})"));
  auto m = s.NextData();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, MessageFrame(b, R"({"n":2})"));  // POST: the whole reply
}

TEST_F(SseTest, RefusalsComeAsStatusesBeforeTheStream) {
  StartServer({"--sse"});
  // Authentication failed (the demo app refuses reject=1): 401, nothing streamed.
  HttpStream unauthorized;
  ASSERT_TRUE(unauthorized.Get(port(), "/events?channel=ChatChannel&reject=1"));
  ASSERT_TRUE(unauthorized.ReadHead());
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_EQ(unauthorized.headers["access-control-allow-origin"], "*");
  EXPECT_TRUE(unauthorized.WaitClosed());
  EXPECT_EQ(unauthorized.body.find("event:"), std::string::npos);
  // Rejected subscription: 400.
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?channel=RejectChannel&user=a")), 400);
  // No channel at all, or an unreadable Last-Event-ID / history_since: 400.
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?user=a")), 400);
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?foo=bar")), 400);
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?channel=ChatChannel&history_since=yesterday")), 400);
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?channel=ChatChannel", {{"Last-Event-ID", "x/e/s"}})),
            400);
  // Malformed JSONL: 400; a body over 64 KiB: 413.
  EXPECT_EQ(StatusOf(HttpPostRequest("/events", "{not json}\n")), 400);
  EXPECT_EQ(StatusOf(HttpPostRequest("/events", std::string(70000, ' '))), 413);
  // Methods: OPTIONS is the CORS preflight, anything but GET/POST is 405.
  EXPECT_EQ(StatusOf("OPTIONS /events HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
  EXPECT_EQ(StatusOf("PUT /events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), 405);
  EXPECT_EQ(StatusOf("DELETE /events?channel=ChatChannel HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
  // The server is still fine: a good stream opens.
  HttpStream ok;
  OpenStream(ok, "/events?channel=ChatChannel&user=a");
  EXPECT_TRUE(ok.NextOfType("confirm_subscription"));
}

TEST_F(SseTest, DisabledByDefault) {
  StartServer();
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?channel=ChatChannel")), 404);
}

TEST_F(SseTest, CorsEchoesAnAllowedOrigin) {
  StartServer({"--sse", "--allowed_origins", "*.example.com"});
  HttpStream s;
  OpenStream(s, "/events?channel=ChatChannel&user=a", {{"Origin", "https://app.example.com"}});
  EXPECT_EQ(s.headers["access-control-allow-origin"], "https://app.example.com");
  HttpStream other;
  OpenStream(other, "/events?channel=ChatChannel&user=a", {{"Origin", "https://evil.test"}});
  EXPECT_EQ(other.headers.count("access-control-allow-origin"), 0u);
}

TEST_F(SseTest, PublicSignedAndTurboStreamsWithoutRpc) {
  StartServer({"--sse", "--noauth", "--public_streams", "--streams_secret", "s3cret",
               "--turbo_streams", "--norpc"});
  HttpStream pub;
  OpenStream(pub, "/events?stream=news");
  HttpStream sig;
  OpenStream(sig, "/events?signed_stream=" + Url(SignStream("news", "s3cret")));
  HttpStream turbo;
  OpenStream(turbo, "/events?turbo_signed_stream_name=" + Url(SignStream("news", "s3cret")));
  for (HttpStream* s : {&pub, &sig, &turbo}) {
    auto w = s->NextEvent();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->event, "welcome");
    EXPECT_EQ(s->NextEvent()->event, "confirm_subscription");
  }
  Broadcast(Publication("news", "\"<turbo-stream action=\\\"append\\\"></turbo-stream>\""));
  for (HttpStream* s : {&pub, &sig, &turbo}) {
    auto m = s->NextData();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->data, "<turbo-stream action=\"append\"></turbo-stream>");
  }
  // A bad signature is a rejected subscription: 400.
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?signed_stream=bogus--00")), 400);
}

TEST_F(SseTest, JwtAuthenticatesAndAnInvalidTokenIs401) {
  const std::string secret = "jwt-secret";
  StartServer({"--sse", "--jwt_secret", secret, "--enforce_jwt", "--public_streams"});
  const std::string token = cable::itauth::Jwt(R"({"alg":"HS256","typ":"JWT"})",
                                               R"({"ext":"{\"user\":\"jo\"}"})", secret);
  HttpStream ok;
  OpenStream(ok, "/events?stream=s&jid=" + token);
  EXPECT_EQ(ok.NextEvent()->event, "welcome");
  HttpStream header;
  OpenStream(header, "/events?stream=s", {{"X-JID", token}});
  EXPECT_EQ(header.NextEvent()->event, "welcome");
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?stream=s&jid=garbage")), 401);
  EXPECT_EQ(StatusOf(HttpGetRequest("/events?stream=s")), 401);
}

TEST_F(SseTest, LastEventIdCatchesUpWithTheMemoryBroker) {
  StartServer({"--sse", "--broker", "memory", "--public_streams", "--noauth", "--norpc"});
  HttpStream s;
  OpenStream(s, "/events?stream=feed");
  ASSERT_TRUE(s.NextOfType("confirm_subscription"));
  Broadcast(Publication("feed", R"({"n":1})"));
  Broadcast(Publication("feed", R"({"n":2})"));
  auto m1 = s.NextData();
  auto m2 = s.NextData();
  ASSERT_TRUE(m1 && m2);
  EXPECT_EQ(m2->data, R"({"n":2})");
  // id: <offset>/<epoch>/<stream>
  ASSERT_EQ(m2->id.substr(0, 2), "2/");
  EXPECT_EQ(m2->id.substr(m2->id.size() - 5), "/feed");
  const std::string last_id = m2->id;
  s.Close();

  // Missed while away.
  Broadcast(Publication("feed", R"({"n":3})"));
  Broadcast(Publication("feed", R"({"n":4})"));

  HttpStream back;
  OpenStream(back, "/events?stream=feed", {{"Last-Event-ID", last_id}});
  EXPECT_EQ(back.NextEvent()->event, "welcome");
  EXPECT_EQ(back.NextEvent()->event, "confirm_subscription");
  auto h3 = back.NextEvent();
  auto h4 = back.NextEvent();
  ASSERT_TRUE(h3 && h4);
  EXPECT_EQ(h3->data, R"({"n":3})");
  EXPECT_EQ(h4->data, R"({"n":4})");
  EXPECT_EQ(h3->id.substr(0, 2), "3/");
  EXPECT_EQ(h4->id.substr(0, 2), "4/");
  EXPECT_EQ(back.NextEvent()->event, "confirm_history");
  // Live again, no duplicate.
  Broadcast(Publication("feed", R"({"n":5})"));
  auto m5 = back.NextData();
  ASSERT_TRUE(m5);
  EXPECT_EQ(m5->data, R"({"n":5})");

  // history_since: everything the stream still has.
  HttpStream since;
  OpenStream(since, "/events?stream=feed&history_since=1");
  int data_events = 0;
  while (auto ev = since.NextEvent(2s)) {
    if (ev->event.empty()) ++data_events;
    if (ev->event == "confirm_history") break;
  }
  EXPECT_EQ(data_events, 5);
}

TEST_F(SseTest, RawStreamsCarryOnlyData) {
  StartServer({"--sse", "--public_streams", "--noauth", "--norpc", "--ping_interval", "1"});
  HttpStream s;
  OpenStream(s, "/events?stream=r&raw=1");
  Broadcast(Publication("r", R"({"x":1})"));
  auto first = s.NextEvent();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->event, "");
  EXPECT_EQ(first->data, R"({"x":1})");
  // No pings either, within two ping intervals.
  EXPECT_FALSE(s.NextEvent(2500ms));
}

TEST_F(SseTest, PingsAreEvents) {
  StartServer({"--sse", "--public_streams", "--noauth", "--norpc", "--ping_interval", "1"});
  HttpStream s;
  OpenStream(s, "/events?stream=p");
  auto ping = s.NextOfType("ping", 4s);
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->data.rfind("{\"type\":\"ping\",\"message\":", 0), 0u) << ping->data;
}

TEST_F(SseTest, RemoteDisconnectSendsDisconnectWithRetryAndEndsTheStream) {
  StartServer({"--sse"});
  HttpStream s;
  OpenStream(s, "/events?channel=ChatChannel&user=zed");
  ASSERT_TRUE(s.NextOfType("confirm_subscription"));
  Broadcast(
      R"({"command":"disconnect","payload":{"identifier":"{\"current_user\":\"zed\"}","reconnect":false}})");
  auto d = s.NextOfType("disconnect");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->data, R"({"type":"disconnect","reason":"remote","reconnect":false})");
  EXPECT_EQ(d->retry, "31536000000");
  EXPECT_TRUE(s.WaitClosed());
  EXPECT_TRUE(s.body_ended());  // the chunked body ended cleanly before the close
  // The app got its Disconnect.
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 5s));
}

TEST_F(SseTest, ShutdownSendsServerRestart) {
  StartServer({"--sse"});
  HttpStream s;
  OpenStream(s, "/events?channel=ChatChannel&user=a");
  ASSERT_TRUE(s.NextOfType("confirm_subscription"));
  std::thread stop([&] { server_.Stop(); });
  auto d = s.NextOfType("disconnect");
  stop.join();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->data, R"({"type":"disconnect","reason":"server_restart","reconnect":true})");
  EXPECT_TRUE(d->retry.empty());
  EXPECT_TRUE(s.WaitClosed());
}

TEST_F(SseTest, ClientGoingAwayLeavesNothingBehind) {
  StartServer({"--sse", "--metrics_http", "/metrics"});
  {
    HttpStream a;
    OpenStream(a, "/events?channel=ChatChannel&user=a");
    HttpStream b;
    OpenStream(b, "/events?channel=ChatChannel&user=b");
    ASSERT_TRUE(b.NextOfType("confirm_subscription"));
    ASSERT_TRUE(a.NextOfType("confirm_subscription"));
    EXPECT_EQ(MetricValue(port(), "anycable_go_sse_clients_num"), 2);
    EXPECT_EQ(MetricValue(port(), "anycable_go_clients_num"), 2);
  }
  // Both went away: their sessions end (Disconnect RPC each) and the gauges go back to 0.
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 2; }, 5s));
  for (int i = 0; i < 50 && MetricValue(port(), "anycable_go_sse_clients_num") != 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(MetricValue(port(), "anycable_go_sse_clients_num"), 0);
  EXPECT_EQ(MetricValue(port(), "anycable_go_clients_num"), 0);
  EXPECT_EQ(MetricValue(port(), "anycable_go_broadcast_streams_num"), 0);
}

TEST_F(SseTest, ClientThatNeverReadsIsDisconnectedAsTooSlow) {
  StartServer({"--sse", "--public_streams", "--noauth", "--norpc", "--metrics_http", "/metrics",
               "--ws_max_pending_size", "262144"});
  HttpStream reader;
  OpenStream(reader, "/events?stream=flood");
  HttpStream stuck;  // never reads past its head
  OpenStream(stuck, "/events?stream=flood");
  // The healthy client reads everything, on its own thread.
  std::atomic<bool> stop{false};
  std::atomic<int> got{0};
  std::thread drain([&] {
    while (!stop.load()) {
      if (reader.NextData(50ms)) got.fetch_add(1);
    }
  });
  const std::string big(16000, 'x');
  int sent = 0;
  for (; sent < 400; ++sent) {
    Broadcast(Publication("flood", "\"" + big + "\""));
    if (sent % 10 == 9 && MetricValue(port(), "anycable_go_disconnected_slow_clients_total") >= 1) {
      ++sent;
      break;
    }
  }
  EXPECT_GE(MetricValue(port(), "anycable_go_disconnected_slow_clients_total"), 1);
  for (int i = 0; i < 100 && got.load() < sent; ++i) std::this_thread::sleep_for(50ms);
  stop.store(true);
  drain.join();
  EXPECT_EQ(got.load(), sent);  // the reader lost nothing
  EXPECT_EQ(MetricValue(port(), "anycable_go_sse_clients_num"), 1);
  // The stuck client's stream ends (too_slow) once it reads what was sent before the cut.
  auto bye = stuck.NextOfType("disconnect", 10s);
  ASSERT_TRUE(bye);
  EXPECT_EQ(bye->data, R"({"type":"disconnect","reason":"too_slow","reconnect":true})");
  EXPECT_TRUE(stuck.WaitClosed());
}

TEST_F(SseTest, PipelinedAndHalfSentRequests) {
  StartServer({"--sse", "--public_streams", "--noauth", "--norpc", "--handshake_timeout", "1"});
  // Bytes after an SSE request are not read as another request.
  HttpStream s;
  ASSERT_TRUE(s.Open(port(), HttpGetRequest("/events?stream=q") + HttpGetRequest("/health")));
  ASSERT_TRUE(s.ReadHead());
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.NextEvent()->event, "welcome");
  // A POST whose body never completes is dropped at the handshake timeout, without a stream.
  HttpStream half;
  ASSERT_TRUE(
      half.Open(port(), "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
  EXPECT_TRUE(half.WaitClosed(5s));
  EXPECT_EQ(half.status, 0);
}

}  // namespace
}  // namespace cable::ittransports
