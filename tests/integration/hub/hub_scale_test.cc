// Fan-out at scale through the real binary (--workers 2): 5,000 subscribers of one stream, held
// by one test thread with epoll, each receive every one of 1,000 publications exactly once and
// in order.
#include <atomic>
#include <cstdlib>
#include <thread>

#include "hub_fixture.h"

namespace cable::ithub {
namespace {

class ScaleTest : public HubTest {};

TEST_F(ScaleTest, FiveThousandSubscribersGetEveryPublicationOnce) {
  constexpr size_t kClients = 5000;
  constexpr int kPublications = 1000;
  constexpr int kBatch = 25;
  StartServer({"--log_level", "warn"});
  const std::string id = StreamId("scale");
  // Every delivered publication is this prefix, the number, then "}".
  std::string prefix = Delivered(id, "");
  prefix.pop_back();

  Swarm swarm;
  const std::string subscribe = MaskedText(SubscribeCommand(id));
  for (size_t i = 0; i < kClients; ++i) {
    ASSERT_GE(swarm.Add(server_.port(), "/cable", subscribe), 0) << "client " << i;
  }

  std::vector<int> next(kClients, 0);  // the number each client expects next
  size_t confirmed = 0, received = 0;
  std::vector<std::string> errors;
  auto on_text = [&](size_t c, std::string_view text) {
    if (text.size() > prefix.size() && text.compare(0, prefix.size(), prefix) == 0) {
      int n = std::atoi(std::string(text.substr(prefix.size())).c_str());
      if (n != next[c] && errors.size() < 10) {
        errors.push_back("client " + std::to_string(c) + " expected " + std::to_string(next[c]) +
                         " got " + std::to_string(n));
      }
      next[c] = n + 1;
      ++received;
    } else if (text.find("confirm_subscription") != std::string_view::npos) {
      ++confirmed;
    } else if (text.find("\"type\":\"welcome\"") == std::string_view::npos &&
               text.find("\"type\":\"ping\"") == std::string_view::npos && errors.size() < 10) {
      errors.push_back("client " + std::to_string(c) + " unexpected " + std::string(text));
    }
  };
  ASSERT_TRUE(swarm.Pump(
      on_text, [&] { return confirmed == kClients; }, 120s))
      << confirmed << " of " << kClients << " subscribed, " << swarm.closed() << " closed";
  ASSERT_EQ(swarm.closed(), 0u);

  std::atomic<int> failed_posts{0};
  std::thread publisher([&] {
    for (int first = 0; first < kPublications; first += kBatch) {
      std::string batch = "[";
      for (int n = first; n < first + kBatch; ++n) {
        batch += (n > first ? "," : "") + Pub("scale", std::to_string(n));
      }
      if (Publish(batch + "]") != 201) failed_posts.fetch_add(1);
    }
  });
  constexpr size_t kExpected = kClients * kPublications;
  bool all = swarm.Pump(
      on_text, [&] { return received >= kExpected; }, 120s);
  publisher.join();
  ASSERT_EQ(failed_posts.load(), 0);
  EXPECT_TRUE(errors.empty()) << errors.front();
  ASSERT_TRUE(all) << received << " of " << kExpected << " frames, " << swarm.closed()
                   << " clients closed";
  EXPECT_EQ(received, kExpected);
  EXPECT_EQ(swarm.closed(), 0u);
  for (size_t c = 0; c < kClients; ++c) {
    ASSERT_EQ(next[c], kPublications) << "client " << c;
  }
}

// SIGTERM under load (issue #7): 3,000 subscribers while publications keep flowing. Every client
// gets server_restart then close 1001, every Disconnect call is made, and the process exits 0.
TEST_F(ScaleTest, SigtermUnderLoadSaysServerRestartToEveryClient) {
  constexpr size_t kClients = 3000;
  StartServer({"--log_level", "warn"});
  const std::string id = StreamId("busy");
  Swarm swarm;
  const std::string subscribe = MaskedText(SubscribeCommand(id));
  for (size_t i = 0; i < kClients; ++i) {
    ASSERT_GE(swarm.Add(server_.port(), "/cable", subscribe), 0) << "client " << i;
  }
  const std::string restart =
      "{\"type\":\"disconnect\",\"reason\":\"server_restart\",\"reconnect\":true}";
  size_t confirmed = 0, deliveries = 0;
  std::vector<int> restarts(kClients, 0);
  auto on_text = [&](size_t c, std::string_view text) {
    if (text.find("confirm_subscription") != std::string_view::npos) ++confirmed;
    if (text.find("\"message\":") != std::string_view::npos && text.find("\"identifier\"") == 1) {
      ++deliveries;
    }
    if (text == restart) ++restarts[c];
  };
  ASSERT_TRUE(swarm.Pump(
      on_text, [&] { return confirmed == kClients; }, 120s))
      << confirmed << " of " << kClients << " subscribed";

  std::atomic<bool> stop_publishing{false};
  std::thread publisher([&] {
    for (int n = 0; n < 100000 && !stop_publishing.load(); ++n)
      Publish(Pub("busy", std::to_string(n)));
  });
  // Load first: wait until publications are reaching the clients.
  ASSERT_TRUE(swarm.Pump(
      on_text, [&] { return deliveries >= kClients * 3; }, 60s));

  int exit_code = -2;
  std::thread stopper([&] { exit_code = server_.Stop(90s); });
  bool all_closed = swarm.Pump(
      on_text, [&] { return swarm.closed() == kClients; }, 90s);
  stopper.join();
  stop_publishing.store(true);
  publisher.join();

  ASSERT_TRUE(all_closed) << swarm.closed() << " of " << kClients << " closed";
  EXPECT_EQ(exit_code, 0);
  size_t without_restart = 0, wrong_code = 0;
  for (size_t c = 0; c < kClients; ++c) {
    if (restarts[c] != 1) ++without_restart;
    if (swarm.client(c).close_code != 1001) ++wrong_code;
  }
  EXPECT_EQ(without_restart, 0u);
  EXPECT_EQ(wrong_code, 0u);
  EXPECT_EQ(rpc_.disconnects().size(), kClients);
}

}  // namespace
}  // namespace cable::ithub
