// Live upgrade (#19) with Redis / NATS pub/sub, through the real binary against a real
// redis-server / nats-server started by the test: the pub/sub fence makes every publication that
// arrives through pub/sub while the connections move reach each subscriber exactly once, in
// order (design: src/upgrade/upgrade.h, "Pub/sub fence"). The test process is a child subreaper,
// so the new process (a child of the old one) becomes its child once the old one exits.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "brokers.h"
#include "core_fixture.h"

namespace cable::itcore {
namespace {

using Clock = std::chrono::steady_clock;
using cable::test::BrokerProcess;

// Publications per stream at most: a slow handover (ASan, busy cores) holds all of them and then
// delivers them at once, and each client's share must fit its socket buffers (the test reads the
// clients one after another).
constexpr int kMaxPublications = 300;

// A process this test did not spawn directly (the upgraded server): killed and reaped at the end.
class Adopted {
 public:
  ~Adopted() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
  }
  void set(pid_t pid) { pid_ = pid; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// One RESP connection to Redis for publishing (blocking, bounded reads).
class RedisPublisher {
 public:
  ~RedisPublisher() {
    if (fd_ >= 0) close(fd_);
  }
  bool Connect(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  // PUBLISH channel payload; the number of receivers Redis reports, -1 on error.
  int Publish(const std::string& channel, const std::string& payload) {
    std::string cmd = "*3\r\n$7\r\nPUBLISH\r\n$" + std::to_string(channel.size()) + "\r\n" +
                      channel + "\r\n$" + std::to_string(payload.size()) + "\r\n" + payload +
                      "\r\n";
    if (send(fd_, cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size()))
      return -1;
    std::string line;
    auto deadline = Clock::now() + 5s;
    while (line.find("\r\n") == std::string::npos && Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char c;
      if (recv(fd_, &c, 1, 0) != 1) return -1;
      line += c;
    }
    if (line.size() < 3 || line[0] != ':') return -1;
    return std::atoi(line.c_str() + 1);
  }

 private:
  int fd_ = -1;
};

class UpgradePubSubTest : public CoreTest {
 protected:
  void SetUp() override {
    CoreTest::SetUp();
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- log ----\n" << server_.Log() << "-------------\n";
    if (next_.pid() > 0) kill(next_.pid(), SIGTERM);
    CoreTest::TearDown();
  }
  bool WaitLog(const std::string& needle, std::chrono::milliseconds timeout = 30s) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (server_.Log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  pid_t StartedPid() {
    std::string log = server_.Log();
    size_t at = log.rfind("upgrade: started ");
    if (at == std::string::npos) return -1;
    at = log.find("(pid ", at);
    return at == std::string::npos ? -1 : std::atoi(log.c_str() + at + 5);
  }
  // Redis reports at least `count` subscribers of `channel` (bounded).
  bool WaitRedisSubscribers(int port, const std::string& channel, int count) {
    auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline) {
      std::string out = cable::test::RedisCli(port, {"PUBSUB", "NUMSUB", channel});
      size_t nl = out.find('\n');
      if (nl != std::string::npos && std::atoi(out.c_str() + nl + 1) >= count) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // `clients` v1 clients, client i subscribed to streams[i % streams.size()].
  void ConnectSubscribers(int clients, const std::vector<std::string>& streams) {
    for (int i = 0; i < clients; ++i) {
      clients_.push_back(std::make_unique<WsClient>());
      ASSERT_EQ(clients_.back()->Connect(server_.port(), "/cable?user=u" + std::to_string(i)), 101);
    }
    for (auto& c : clients_) ASSERT_TRUE(c->WaitFor("welcome").has_value());
    for (size_t i = 0; i < clients_.size(); ++i) {
      ASSERT_TRUE(clients_[i]->Subscribe(Room(streams[i % streams.size()])));
    }
    for (auto& c : clients_) ASSERT_TRUE(c->WaitFor("confirm_subscription").has_value());
  }
  static std::string Room(const std::string& stream) {
    return WsClient::Identifier("ChatChannel", {{"stream", stream}});
  }
  // SIGUSR2 while `publishing` runs; returns once the old process exited and the new one adopted.
  void UpgradeNow() {
    ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
    ASSERT_TRUE(WaitLog("upgrade: started "));
    next_.set(StartedPid());
    ASSERT_GT(next_.pid(), 0);
    ASSERT_EQ(server_.WaitExit(60s), 0) << "the old process did not exit";
    ASSERT_TRUE(WaitLog("upgrade: adopted "));
  }
  // Every client got 1..count on its stream, once each, in order, then the end marker.
  void ExpectEachOnceInOrder(const std::vector<std::string>& streams, int count) {
    for (size_t i = 0; i < clients_.size(); ++i) {
      const std::string& stream = streams[i % streams.size()];
      for (int n = 1; n <= count; ++n) {
        WsFrame f = clients_[i]->NextMessage();
        ASSERT_EQ(f.opcode, 1) << "client " << i << " lost publication " << n;
        ASSERT_EQ(f.payload, MessageFrame(Room(stream), "{\"n\":" + std::to_string(n) + "}"))
            << "client " << i << " expected " << n;
      }
      WsFrame end = clients_[i]->NextMessage();
      ASSERT_EQ(end.payload, MessageFrame(Room(stream), R"({"n":"end"})"))
          << "client " << i << ": something after the last publication (a duplicate?)";
    }
  }
  static std::string Pub(const std::string& stream, const std::string& data) {
    return Publication(stream, data);
  }

  // Publishes 1, 2, ... on every stream from another Redis connection (like another node or the
  // app), paced by a short pause, from before the upgrade until after it; returns the last number.
  static int PublishThroughRedisDuringUpgrade(int redis_port, const std::string& channel_of_all,
                                              const std::vector<std::string>& streams,
                                              const std::function<void()>& upgrade) {
    RedisPublisher pub;
    if (!pub.Connect(redis_port)) return -1;
    std::atomic<bool> upgraded{false};
    std::atomic<int> last{0};
    std::atomic<bool> failed{false};
    std::thread publisher([&] {
      int after = 0;
      for (int n = 1; n <= kMaxPublications && after < 50; ++n) {
        for (const auto& stream : streams) {
          std::string body = Publication(stream, "{\"n\":" + std::to_string(n) + "}");
          if (pub.Publish(channel_of_all.empty() ? stream : channel_of_all, body) < 1) {
            failed = true;  // nobody subscribed: would be lost whatever the upgrade does
            return;
          }
        }
        last = n;
        if (upgraded.load()) ++after;
        std::this_thread::sleep_for(2ms);
      }
    });
    auto deadline = Clock::now() + 10s;
    while (last.load() < 30 && !failed.load() && Clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    upgrade();
    upgraded = true;
    publisher.join();
    return failed.load() ? -1 : last.load();
  }

  std::vector<std::unique_ptr<WsClient>> clients_;
  Adopted next_;
};

// --broker redis --pubsub redis: publications of the stream channels by another Redis client
// while 2000 subscribers move: each arrives once, in order.
TEST_F(UpgradePubSubTest, RedisStreamChannelsExactlyOnceAcrossTheHandover) {
  BrokerProcess redis(BrokerProcess::Kind::kRedis);
  ASSERT_TRUE(redis.Start());
  StartServer({"--workers", "2", "--broker", "redis", "--pubsub", "redis", "--redis_url",
               redis.url(), "--broadcast_adapter", "http"});
  const std::vector<std::string> streams = {"ps0", "ps1", "ps2", "ps3"};
  ConnectSubscribers(2000, streams);
  for (const auto& s : streams) ASSERT_TRUE(WaitRedisSubscribers(redis.port(), s, 1));
  int last = PublishThroughRedisDuringUpgrade(redis.port(), "", streams, [&] { UpgradeNow(); });
  ASSERT_GT(last, 0);
  ASSERT_TRUE(WaitLog("upgrade: pub/sub fence __ringcable_upgrade__."));
  EXPECT_NE(server_.Log().find("(cut: this process delivers"), std::string::npos);
  RedisPublisher end;
  ASSERT_TRUE(end.Connect(redis.port()));
  for (const auto& s : streams) ASSERT_GE(end.Publish(s, Pub(s, R"({"n":"end"})")), 1);
  ExpectEachOnceInOrder(streams, last);
  EXPECT_EQ(rpc_.connects().size(), 2000u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
}

// The legacy broadcast channel (--broadcast_adapter redis, no pub/sub): the same guarantee.
TEST_F(UpgradePubSubTest, RedisLegacyBroadcastChannelExactlyOnceAcrossTheHandover) {
  BrokerProcess redis(BrokerProcess::Kind::kRedis);
  ASSERT_TRUE(redis.Start());
  StartServer({"--workers", "2", "--broadcast_adapter", "redis", "--redis_url", redis.url()});
  const std::vector<std::string> streams = {"legacy0", "legacy1"};
  ConnectSubscribers(300, streams);
  ASSERT_TRUE(WaitRedisSubscribers(redis.port(), "__anycable__", 1));
  int last = PublishThroughRedisDuringUpgrade(redis.port(), "__anycable__", streams,
                                              [&] { UpgradeNow(); });
  ASSERT_GT(last, 0);
  EXPECT_NE(server_.Log().find("(cut: this process delivers"), std::string::npos);
  RedisPublisher end;
  ASSERT_TRUE(end.Connect(redis.port()));
  for (const auto& s : streams) ASSERT_GE(end.Publish("__anycable__", Pub(s, R"({"n":"end"})")), 1);
  ExpectEachOnceInOrder(streams, last);
}

// --broker nats --pubsub nats: HTTP publications (published on NATS by whichever process accepts
// them, delivered by every process through NATS) during the handover: each arrives once, in order.
TEST_F(UpgradePubSubTest, NatsExactlyOnceAcrossTheHandover) {
  BrokerProcess nats(BrokerProcess::Kind::kNats);
  ASSERT_TRUE(nats.Start({"-js"}));
  StartServer({"--workers", "2", "--broker", "nats", "--pubsub", "nats", "--nats_servers",
               nats.url(), "--broadcast_adapter", "http"});
  const std::vector<std::string> streams = {"ns0", "ns1"};
  ConnectSubscribers(1000, streams);
  std::atomic<bool> upgraded{false};
  std::atomic<int> last{0};
  std::atomic<int> failures{0};
  std::thread publisher([&] {
    int after = 0;
    for (int n = 1; n <= kMaxPublications && after < 50; ++n) {
      for (const auto& stream : streams) {
        for (int attempt = 0; attempt < 50; ++attempt) {
          auto r = cable::test::HttpRequest(broadcast_port_, "POST", "/_broadcast",
                                            {{"Content-Type", "application/json"}},
                                            Pub(stream, "{\"n\":" + std::to_string(n) + "}"));
          if (r.status == 201) break;
          if (r.status != 0) {
            failures.fetch_add(1);
            break;
          }
        }
      }
      last = n;
      if (upgraded.load()) ++after;
      std::this_thread::sleep_for(2ms);
    }
  });
  auto deadline = Clock::now() + 10s;
  while (last.load() < 30 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  UpgradeNow();
  upgraded = true;
  publisher.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_NE(server_.Log().find("(cut: this process delivers"), std::string::npos);
  for (const auto& s : streams) Broadcast(Pub(s, R"({"n":"end"})"));
  ExpectEachOnceInOrder(streams, last.load());
}

// The new process dies after the cut (a test hook stops its acks after two connections; the test
// kills it): the old one keeps the other connections and delivers pub/sub again. What was
// published between the cut and the abort was the new process's to deliver: lost for them.
TEST_F(UpgradePubSubTest, NewProcessKilledAfterTheCut) {
  BrokerProcess redis(BrokerProcess::Kind::kRedis);
  ASSERT_TRUE(redis.Start());
  broadcast_port_ = cable::test::FreePort();
  ASSERT_TRUE(server_.Start(
      {"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_), "--http_broadcast_port",
       std::to_string(broadcast_port_), "--workers", "1", "--broker", "redis", "--pubsub", "redis",
       "--redis_url", redis.url(), "--broadcast_adapter", "http"},
      {{"RINGCABLE_UPGRADE_TEST_ACK_LIMIT", "2"}}));
  ConnectSubscribers(5, {"cut"});
  ASSERT_TRUE(WaitRedisSubscribers(redis.port(), "cut", 1));
  ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
  ASSERT_TRUE(WaitLog("test hook: holding back acks"));
  ASSERT_NE(server_.Log().find("(cut: this process delivers"), std::string::npos);
  RedisPublisher pub;
  ASSERT_TRUE(pub.Connect(redis.port()));
  ASSERT_EQ(pub.Publish("cut", Pub("cut", R"({"n":"after-cut"})")), 2);  // old + new
  pid_t child = StartedPid();
  ASSERT_GT(child, 0);
  ASSERT_EQ(kill(child, SIGKILL), 0);  // the old process reaps it
  ASSERT_TRUE(WaitLog("the old process keeps serving"));
  ASSERT_TRUE(WaitRedisSubscribers(redis.port(), "cut", 1));
  ASSERT_GE(pub.Publish("cut", Pub("cut", R"({"n":"resumed"})")), 1);
  int kept = 0;
  for (auto& c : clients_) {
    WsFrame f = c->NextMessage();
    if (f.opcode != 1) continue;  // one of the two the dead process had taken
    ++kept;
    EXPECT_EQ(f.payload, MessageFrame(Room("cut"), R"({"n":"resumed"})"))
        << "the message published after the cut belonged to the dead process";
  }
  EXPECT_EQ(kept, 3);
  EXPECT_EQ(server_.Stop(), 0);
}

// Redis is down when the upgrade starts: no fence can be set (a warning says so), the handover
// goes on without waiting, and once Redis is back the new process delivers what it publishes.
TEST_F(UpgradePubSubTest, LinkDownAtTheStartMeansNoFenceAndNoWait) {
  BrokerProcess redis(BrokerProcess::Kind::kRedis);
  ASSERT_TRUE(redis.Start());
  StartServer({"--workers", "1", "--pubsub", "redis", "--redis_url", redis.url(),
               "--broadcast_adapter", "http"});
  ConnectSubscribers(3, {"down"});
  ASSERT_TRUE(WaitRedisSubscribers(redis.port(), "down", 1));
  redis.Kill();
  ASSERT_TRUE(WaitLog("redis: link down"));
  UpgradeNow();
  EXPECT_NE(server_.Log().find("upgrade: a pub/sub link is down; no fence"), std::string::npos);
  EXPECT_EQ(server_.Log().find("(cut: this process delivers"), std::string::npos);
  ASSERT_TRUE(redis.Restart());
  ASSERT_TRUE(WaitRedisSubscribers(redis.port(), "down", 1));
  RedisPublisher pub;
  ASSERT_TRUE(pub.Connect(redis.port()));
  ASSERT_EQ(pub.Publish("down", Pub("down", R"({"n":"back"})")), 1);  // the new process only
  for (auto& c : clients_) {
    EXPECT_EQ(c->NextMessage().payload, MessageFrame(Room("down"), R"({"n":"back"})"));
  }
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
}

}  // namespace
}  // namespace cable::itcore
