// nats::Link against a real nats-server on a loopback port: delivery, unsubscribe, starting while
// the server is down, kill/restart, and Close while messages flow. ParseServers as a table.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "nats/nats_link.h"
#include "tests/support/brokers.h"

namespace cable::nats {
namespace {

using namespace std::chrono_literals;
using test::BrokerProcess;

// Unloads libnats after the last test so the leak checker sees its threads and memory go away
// (a Link never closes the library itself: other links may use it).
class NatsLibraryEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { nats_CloseAndWait(10000); }
};
[[maybe_unused]] const auto* const kNatsEnvironment =
    ::testing::AddGlobalTestEnvironment(new NatsLibraryEnvironment);

// ---------------------------------------------------------------------------------------------
// ParseServers

TEST(ParseServersTest, AcceptsUrlsAndBareHostPorts) {
  struct Case {
    std::string input;
    std::vector<std::string> servers;
  };
  const std::vector<Case> cases = {
      {"nats://127.0.0.1:4222", {"nats://127.0.0.1:4222"}},
      {"nats://a:4222,nats://b:4222", {"nats://a:4222", "nats://b:4222"}},
      {" tls://h:4443 ", {"tls://h:4443"}},
      {"nats://user:pass@host:4222", {"nats://user:pass@host:4222"}},
      {"user:pass@host:4222", {"nats://user:pass@host:4222"}},
      {"host:4222", {"nats://host:4222"}},
      {"localhost", {"nats://localhost"}},
      {"NATS://Host:4222", {"nats://Host:4222"}},
      {"nats://[::1]:4222", {"nats://[::1]:4222"}},
      {"nats://h:4222/", {"nats://h:4222"}},
      {"a:1 , tls://b:2", {"nats://a:1", "tls://b:2"}},
  };
  for (const auto& c : cases) {
    auto parsed = ParseServers(c.input);
    ASSERT_TRUE(parsed.ok()) << c.input << ": " << parsed.error();
    EXPECT_EQ(parsed->servers, c.servers) << c.input;
  }
}

TEST(ParseServersTest, RejectsBadEntriesNamingThem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://x:1", R"(--nats_servers: unsupported scheme in "http://x:1")"},
      {"nats://a:1,http://x:1", R"(--nats_servers: unsupported scheme in "http://x:1")"},
      {"ws://x:1", R"(--nats_servers: unsupported scheme in "ws://x:1")"},
      {"", "--nats_servers: no servers given"},
      {"   ", "--nats_servers: no servers given"},
      {"nats://a:1,,nats://b:2", R"(--nats_servers: empty entry #2 in "nats://a:1,,nats://b:2")"},
      {"nats://a:1,", R"(--nats_servers: empty entry #2 in "nats://a:1,")"},
      {"nats://:4222", R"(--nats_servers: missing host in "nats://:4222")"},
      {"nats://h:", R"(--nats_servers: bad port in "nats://h:")"},
      {"nats://h:x1", R"(--nats_servers: bad port in "nats://h:x1")"},
      {"nats://h:70000", R"(--nats_servers: bad port in "nats://h:70000")"},
      {"nats://h:0", R"(--nats_servers: bad port in "nats://h:0")"},
      {"nats://@h:1", R"(--nats_servers: empty user info in "nats://@h:1")"},
      {"nats://h:1/path", R"(--nats_servers: unexpected path in "nats://h:1/path")"},
      {"nats://a b:1", R"(--nats_servers: whitespace or control character in "nats://a b:1")"},
      {"nats://::1:4222", R"(--nats_servers: IPv6 address without brackets in "nats://::1:4222")"},
  };
  for (const auto& [input, message] : cases) {
    auto parsed = ParseServers(input);
    ASSERT_FALSE(parsed.ok()) << input;
    EXPECT_EQ(parsed.error(), message) << input;
    EXPECT_EQ(parsed.error().find('\n'), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// Link against nats-server

// Polls `done` until it holds or 10 s pass (a bug fails the test instead of hanging it).
template <typename Pred>
bool Eventually(Pred done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Records everything the link reports; every wait is bounded.
class Recorder : public Link::Handler {
 public:
  struct Message {
    std::string subject;
    std::string payload;
  };

  void OnNatsMessage(std::string subject, std::string payload) override {
    if (closed_.load()) calls_after_close_++;
    {
      std::lock_guard lock(mu_);
      messages_.push_back({std::move(subject), std::move(payload)});
    }
    // A slow handler makes a call likely to be running while Close is called; a call that
    // finishes after Close returned is as wrong as one that starts then.
    if (slow_) std::this_thread::sleep_for(100us);
    if (closed_.load()) calls_after_close_++;
  }
  void OnNatsState(bool connected, const std::string& detail) override {
    if (closed_.load()) calls_after_close_++;
    EXPECT_EQ(detail.find('\n'), std::string::npos);
    std::lock_guard lock(mu_);
    states_.push_back(connected);
  }

  bool WaitForMessage(const std::string& subject, const std::string& payload) {
    return Eventually([&] { return Count(subject, payload) > 0; });
  }
  bool WaitForStates(size_t n) {
    return Eventually([&] { return States().size() >= n; });
  }
  int Count(const std::string& subject, const std::string& payload) {
    std::lock_guard lock(mu_);
    return CountLocked(subject, payload);
  }
  std::vector<Message> MessagesOn(const std::string& subject) {
    std::lock_guard lock(mu_);
    std::vector<Message> out;
    for (const auto& m : messages_) {
      if (m.subject == subject) out.push_back(m);
    }
    return out;
  }
  size_t MessageCount() {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  std::vector<bool> States() {
    std::lock_guard lock(mu_);
    return states_;
  }
  void MarkClosed() { closed_.store(true); }
  void SetSlow() { slow_ = true; }
  int calls_after_close() const { return calls_after_close_.load(); }

 private:
  int CountLocked(const std::string& subject, const std::string& payload) {
    int n = 0;
    for (const auto& m : messages_) n += m.subject == subject && m.payload == payload;
    return n;
  }

  std::mutex mu_;
  std::vector<Message> messages_;
  std::vector<bool> states_;
  bool slow_ = false;
  std::atomic<bool> closed_{false};
  std::atomic<int> calls_after_close_{0};
};

class NatsLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) {
      GTEST_SKIP() << "nats-server is not installed";
    }
    ASSERT_TRUE(broker_.Start()) << broker_.Log();
  }

  std::unique_ptr<Link> StartLink(Recorder* recorder) {
    Options options;
    options.servers = {broker_.url()};
    options.name = "ringcable-test";
    auto link = Link::Start(options, recorder);
    EXPECT_TRUE(link.ok()) << (link.ok() ? "" : link.error());
    return link.ok() ? std::move(link.value()) : nullptr;
  }

  // Round trip through the link's own connection: once the echo arrives, the server has
  // processed every SUB/UNSUB the link sent before it.
  ::testing::AssertionResult Sync(Link& link, Recorder& recorder) {
    std::string payload = "sync-" + std::to_string(++sync_count_);
    link.Subscribe("test.sync");
    if (!link.Publish("test.sync", payload)) {
      return ::testing::AssertionFailure() << "publish of " << payload << " failed";
    }
    if (!recorder.WaitForMessage("test.sync", payload)) {
      return ::testing::AssertionFailure() << payload << " did not come back";
    }
    return ::testing::AssertionSuccess();
  }

  BrokerProcess broker_{BrokerProcess::Kind::kNats};
  int sync_count_ = 0;
};

TEST_F(NatsLinkTest, DeliversExactSubjectAndPayload) {
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  ASSERT_TRUE(recorder.WaitForStates(1));
  EXPECT_EQ(recorder.States(), std::vector<bool>{true});
  EXPECT_TRUE(link->connected());
  link->Subscribe("cable.stream.a");
  ASSERT_TRUE(Sync(*link, recorder));

  const std::string text = R"({"stream":"chat_1","data":"{\"text\":\"hi\"}"})";
  const std::string binary("a\0b\r\nPUB x 3\r\n\xff\xfe\x01 end", 22);
  std::string big(512 * 1024, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>((i * 31 + 7) % 251);
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.stream.a", text));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.stream.a", binary));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.stream.a", big));
  ASSERT_TRUE(Eventually([&] { return recorder.MessagesOn("cable.stream.a").size() >= 3; }));
  auto got = recorder.MessagesOn("cable.stream.a");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].payload, text);
  EXPECT_EQ(got[1].payload, binary);
  EXPECT_EQ(got[2].payload.size(), big.size());
  EXPECT_TRUE(got[2].payload == big);
}

TEST_F(NatsLinkTest, OwnPublicationOnSubscribedSubjectArrivesOnce) {
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  ASSERT_TRUE(recorder.WaitForStates(1));
  link->Subscribe("cable.self");
  link->Subscribe("cable.self");  // idempotent: still one subscription
  ASSERT_TRUE(link->Publish("cable.self", "once"));
  ASSERT_TRUE(link->Publish("cable.self", "marker"));
  ASSERT_TRUE(recorder.WaitForMessage("cable.self", "marker"));
  EXPECT_EQ(recorder.Count("cable.self", "once"), 1);
  EXPECT_EQ(recorder.Count("cable.self", "marker"), 1);
}

TEST_F(NatsLinkTest, PublishRejectsInvalidSubjects) {
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  ASSERT_TRUE(recorder.WaitForStates(1));
  for (const char* subject :
       {"", "a b", "a\tb", "a\nb", ".a", "a.", "a..b", "a.*", "a.>", "*", ">", "chat room"}) {
    EXPECT_FALSE(link->Publish(subject, "x")) << '"' << subject << '"';
  }
  // Invalid subscriptions are refused too: nothing arrives for them, the link keeps working.
  link->Subscribe("a b");
  link->Subscribe("");
  EXPECT_TRUE(link->Publish("ok.subject-1_x", "x"));
  // Over the server's max_payload (1 MiB by default): refused, and the connection stays up.
  EXPECT_FALSE(link->Publish("ok.big", std::string(2 << 20, 'x')));
  EXPECT_TRUE(link->connected());
  ASSERT_TRUE(Sync(*link, recorder));
}

TEST_F(NatsLinkTest, UnsubscribeStopsDelivery) {
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  ASSERT_TRUE(recorder.WaitForStates(1));
  link->Subscribe("cable.a");
  link->Subscribe("cable.b");
  ASSERT_TRUE(Sync(*link, recorder));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.a", "before"));
  ASSERT_TRUE(recorder.WaitForMessage("cable.a", "before"));

  link->Unsubscribe("cable.a");
  link->Unsubscribe("cable.a");        // no-op
  link->Unsubscribe("never.subbed");   // no-op
  ASSERT_TRUE(Sync(*link, recorder));  // the server has processed the UNSUB
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.a", "after"));
  // The server queued "after" (if it still matched) before answering the publisher's PING, so a
  // later marker on another subject arrives after it; one delivery thread keeps that order.
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.b", "marker"));
  ASSERT_TRUE(recorder.WaitForMessage("cable.b", "marker"));
  EXPECT_EQ(recorder.Count("cable.a", "after"), 0);
  EXPECT_EQ(recorder.MessagesOn("cable.a").size(), 1u);

  // Subscribing again works.
  link->Subscribe("cable.a");
  ASSERT_TRUE(Sync(*link, recorder));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.a", "again"));
  ASSERT_TRUE(recorder.WaitForMessage("cable.a", "again"));
}

TEST_F(NatsLinkTest, StartsWhileServerIsDownAndConnectsLater) {
  broker_.Kill();  // keeps the port for Restart
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  EXPECT_FALSE(link->connected());
  EXPECT_FALSE(link->Publish("cable.early", "nobody-listens"));
  link->Subscribe("cable.early");
  EXPECT_TRUE(recorder.States().empty());

  ASSERT_TRUE(broker_.Restart()) << broker_.Log();
  ASSERT_TRUE(recorder.WaitForStates(1));
  EXPECT_EQ(recorder.States(), std::vector<bool>{true});
  EXPECT_TRUE(link->connected());
  ASSERT_TRUE(Sync(*link, recorder));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.early", "hello"));
  ASSERT_TRUE(recorder.WaitForMessage("cable.early", "hello"));
  EXPECT_EQ(recorder.Count("cable.early", "nobody-listens"), 0);
  EXPECT_EQ(recorder.States(), std::vector<bool>{true});
}

TEST_F(NatsLinkTest, ReportsKillAndRestartOnceAndResubscribes) {
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  ASSERT_TRUE(recorder.WaitForStates(1));
  link->Subscribe("cable.old");
  link->Subscribe("cable.gone");
  ASSERT_TRUE(Sync(*link, recorder));

  broker_.Kill();
  ASSERT_TRUE(recorder.WaitForStates(2));
  EXPECT_EQ(recorder.States(), (std::vector<bool>{true, false}));
  EXPECT_FALSE(link->connected());
  EXPECT_FALSE(link->Publish("cable.old", "while-down"));
  link->Unsubscribe("cable.gone");  // while disconnected: must not come back after the reconnect
  link->Subscribe("cable.new");     // while disconnected: must take effect after it

  ASSERT_TRUE(broker_.Restart()) << broker_.Log();
  ASSERT_TRUE(recorder.WaitForStates(3));
  ASSERT_TRUE(Sync(*link, recorder));
  EXPECT_EQ(recorder.States(), (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(link->connected());
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.gone", "not-for-us"));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.new", "new"));
  ASSERT_TRUE(test::NatsPublish(broker_.port(), "cable.old", "again"));
  ASSERT_TRUE(recorder.WaitForMessage("cable.old", "again"));
  EXPECT_EQ(recorder.Count("cable.new", "new"), 1);
  EXPECT_TRUE(recorder.MessagesOn("cable.gone").empty());
  // Nothing published while down was buffered and sent after the reconnect (a buffered PUB would
  // have gone out before the Sync publication).
  EXPECT_EQ(recorder.Count("cable.old", "while-down"), 0);
  EXPECT_EQ(recorder.States(), (std::vector<bool>{true, false, true}));
}

TEST_F(NatsLinkTest, CloseWhileMessagesFlowEndsHandlerCalls) {
  Recorder publisher_recorder;
  auto publisher = StartLink(&publisher_recorder);
  ASSERT_TRUE(publisher);
  ASSERT_TRUE(publisher_recorder.WaitForStates(1));

  for (int round = 0; round < 5; round++) {
    Recorder recorder;
    recorder.SetSlow();
    auto link = StartLink(&recorder);
    ASSERT_TRUE(link);
    ASSERT_TRUE(recorder.WaitForStates(1));
    link->Subscribe("cable.flood");
    ASSERT_TRUE(Sync(*link, recorder));

    std::atomic<bool> stop{false};
    std::atomic<long> published{0};
    std::thread flood([&] {
      const std::string payload(200, 'x');
      while (!stop.load()) {
        if (publisher->Publish("cable.flood", payload)) published++;
        if (published % 64 == 0) std::this_thread::yield();
      }
    });
    bool flowing = Eventually([&] { return recorder.MessageCount() >= 500; });
    link->Close();
    recorder.MarkClosed();
    // Keep publishing for a while after Close, then destroy the link as well.
    long at_close = published.load();
    bool more = Eventually([&] { return published.load() >= at_close + 2000; });
    link.reset();
    stop.store(true);
    flood.join();
    ASSERT_TRUE(flowing);
    EXPECT_TRUE(more);
    EXPECT_FALSE(link);
    EXPECT_EQ(recorder.calls_after_close(), 0) << "round " << round;
  }
}

TEST_F(NatsLinkTest, CloseIsIdempotentAndStopsPublishing) {
  Recorder recorder;
  auto link = StartLink(&recorder);
  ASSERT_TRUE(link);
  ASSERT_TRUE(recorder.WaitForStates(1));
  link->Close();
  recorder.MarkClosed();
  link->Close();
  EXPECT_FALSE(link->connected());
  EXPECT_FALSE(link->Publish("cable.x", "x"));
  link->Subscribe("cable.x");  // ignored
  link.reset();
  EXPECT_EQ(recorder.calls_after_close(), 0);
}

TEST(NatsLinkStartTest, RejectsMissingServersOrHandler) {
  Recorder recorder;
  Options options;
  auto no_servers = Link::Start(options, &recorder);
  ASSERT_FALSE(no_servers.ok());
  EXPECT_EQ(no_servers.error(), "nats: no servers");
  options.servers = {"nats://127.0.0.1:1"};
  EXPECT_FALSE(Link::Start(options, nullptr).ok());
}

}  // namespace
}  // namespace cable::nats
