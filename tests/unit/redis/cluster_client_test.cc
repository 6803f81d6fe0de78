// redis::ClusterClient and the cluster URL forms: key slots (known vectors and the server's own
// CLUSTER KEYSLOT), ParseUrl's comma-separated cluster lists, and the client against real
// `redis-server --cluster-enabled yes` clusters made by each test (tests/support/brokers.h):
// routing to slot owners, MOVED, ASK, the redirection limit, a failover, the subscribe connection
// and the errors when no node is a cluster node or none answers. Every wait is bounded.
#include "redis/cluster_client.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/brokers.h"
#include "tests/support/test_support.h"
#include "tests/unit/redis/redis_loop.h"

namespace cable::redis {
namespace {

using test::BrokerProcess;
using test::RedisCluster;

// ---------------------------------------------------------------- KeySlot

TEST(KeySlot, KnownVectors) {
  EXPECT_EQ(KeySlot("123456789"), 12739);  // CRC16-XMODEM("123456789") = 0x31C3
  EXPECT_EQ(KeySlot(""), 0);
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("__anycable__"), KeySlot("{__anycable__}"));
}

TEST(KeySlot, HashTags) {
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("{user1000}.followers"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));   // the first tag only
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));  // up to the first '}'
  EXPECT_NE(KeySlot("foo{}{bar}"), KeySlot("bar"));      // an empty tag: the whole key
  EXPECT_NE(KeySlot("no{close"), KeySlot("close"));      // no '}': the whole key
}

// ---------------------------------------------------------------- ParseUrl: cluster lists

TEST(ParseUrl, ClusterLists) {
  auto full = ParseUrl("redis://:pw@10.0.0.1:7000, redis://10.0.0.2:7001 ,redis://h3", "");
  ASSERT_TRUE(full.ok()) << full.error();
  EXPECT_TRUE(full->cluster_mode());
  EXPECT_TRUE(full->cluster);
  ASSERT_EQ(full->cluster_seeds.size(), 3u);
  EXPECT_EQ(full->cluster_seeds[0].host, "10.0.0.1");
  EXPECT_EQ(full->cluster_seeds[0].port, 7000);
  EXPECT_EQ(full->cluster_seeds[1].host, "10.0.0.2");
  EXPECT_EQ(full->cluster_seeds[1].port, 7001);
  EXPECT_EQ(full->cluster_seeds[2].host, "h3");
  EXPECT_EQ(full->cluster_seeds[2].port, 6379);
  EXPECT_EQ(full->password, "pw");  // the first URL's options serve every node
  EXPECT_EQ(full->Describe(), "cluster 10.0.0.1:7000,10.0.0.2:7001,h3:6379");

  // anycable-go's short syntax: later entries without a scheme.
  auto short_form = ParseUrl("rediss://a:7000/0,b:7001,[::1]:7002", "");
  ASSERT_TRUE(short_form.ok()) << short_form.error();
  EXPECT_TRUE(short_form->tls);
  ASSERT_EQ(short_form->cluster_seeds.size(), 3u);
  EXPECT_EQ(short_form->cluster_seeds[2].host, "::1");
  EXPECT_EQ(short_form->Describe(), "cluster a:7000,b:7001,[::1]:7002 (tls)");

  // One address is not a cluster, and a missing scheme means redis:// (anycable-go 1.6).
  auto single = ParseUrl("localhost:6380", "");
  ASSERT_TRUE(single.ok()) << single.error();
  EXPECT_FALSE(single->cluster_mode());
  EXPECT_TRUE(single->cluster_seeds.empty());
  EXPECT_EQ(single->host, "localhost");
  EXPECT_EQ(single->port, 6380);
}

TEST(ParseUrl, BadClusterLists) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"redis://a:7000,,redis://b:7001",
       "--redis_url: empty address #2 in \"redis://a:7000,,redis://b:7001\""},
      {"redis://a:7000,", "--redis_url: empty address #2 in \"redis://a:7000,\""},
      {"redis://a:7000/3,redis://b:7001",
       "--redis_url: a Redis Cluster has only database 0, got /3 in \"redis://a:7000/3\""},
      {"redis://a:7000,redis://b:7001/1",
       "--redis_url: a Redis Cluster has only database 0, got /1 in \"redis://b:7001/1\""},
      {"redis://a:7000,http://b:7001",
       "--redis_url: unsupported scheme \"http\" (want redis:// or rediss://)"},
      {"redis://a:7000,b:x", "--redis_url: bad port \"x\""},
  };
  for (const auto& [url, want] : cases) {
    SCOPED_TRACE(url);
    auto r = ParseUrl(url, "");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), want);
  }
  auto with_sentinels = ParseUrl("redis://a:7000,redis://b:7001", "s1:26379");
  ASSERT_FALSE(with_sentinels.ok());
  EXPECT_EQ(with_sentinels.error(),
            "--redis_url: a list of addresses (Redis Cluster) cannot be used with "
            "--redis_sentinels");
}

TEST(MakeClient, PicksTheClientTheUrlAsksFor) {
  Recorder rec;
  auto cluster = MakeClient(ParseUrl("redis://a:1,redis://b:2", "").value(), &rec, "x");
  EXPECT_NE(dynamic_cast<ClusterClient*>(cluster.get()), nullptr);
  auto single = MakeClient(ParseUrl("redis://a:1", "").value(), &rec, "y");
  EXPECT_NE(dynamic_cast<Connection*>(single.get()), nullptr);
}

// ---------------------------------------------------------------- against real clusters

class ClusterClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis).empty()) {
      GTEST_SKIP() << "redis-server is not installed";
    }
  }
  // Creates the cluster (fatal failure when it cannot be made).
  void MakeCluster(int masters, int replicas) {
    ASSERT_TRUE(cluster_.Start(masters, replicas)) << cluster_.error();
  }
  Options ClusterOptions() {
    auto r = ParseUrl(cluster_.Url(), "");
    EXPECT_TRUE(r.ok());
    return r.value();
  }
  bool ConnectAndWait(Client& client, Recorder& rec) {
    client.Connect();
    return loop_.Until(client, [&] { return rec.ready > 0 || !rec.closed.empty(); }) &&
           rec.ready > 0;
  }
  Reply KeyRoundtrip(Client& client, const std::string& key, std::vector<std::string> args) {
    bool done = false;
    Reply out = Reply::Error("no reply (timeout)");
    client.KeyCommand(key, std::move(args), [&](Reply&& r) {
      out = std::move(r);
      done = true;
    });
    loop_.Until(client, [&] { return done; });
    return out;
  }
  std::string Addr(int node) { return "127.0.0.1:" + std::to_string(cluster_.node(node).port()); }
  std::string Id(int node) {
    std::string id = cluster_.Cli(static_cast<size_t>(node), {"CLUSTER", "MYID"});
    return id.substr(0, id.find('\n'));
  }
  int CountKeysInSlot(int node, int slot) {
    return std::atoi(
        cluster_
            .Cli(static_cast<size_t>(node), {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)})
            .c_str());
  }

  RedisCluster cluster_;
  Loop loop_;
};

TEST_F(ClusterClientTest, KeySlotMatchesTheServer) {
  MakeCluster(3, 0);
  for (const std::string key : {"123456789", "foo", "{user1000}.following", "foo{}{bar}",
                                "foo{{bar}}zap", "no{close", "__anycable__", "bx", "a b\tc"}) {
    std::string server = cluster_.Cli(0, {"CLUSTER", "KEYSLOT", key});
    EXPECT_EQ(std::atoi(server.c_str()), KeySlot(key)) << key;
  }
}

// Every key lands on the master that owns its slot, written through one client.
TEST_F(ClusterClientTest, KeyCommandsGoToTheSlotOwner) {
  MakeCluster(3, 0);
  Recorder rec;
  ClusterClient client(ClusterOptions(), &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
  EXPECT_EQ(client.Masters().size(), 3u);
  constexpr int kKeys = 120;
  std::set<std::string> owners;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "key:" + std::to_string(i);
    Reply r = KeyRoundtrip(client, key, {"SET", key, std::to_string(i)});
    ASSERT_EQ(r.str, "OK") << key;
    owners.insert(client.OwnerOf(KeySlot(key)));
  }
  EXPECT_EQ(owners.size(), 3u) << "120 keys spread over every master";
  int stored = 0;
  for (size_t n = 0; n < cluster_.size(); ++n) {
    stored += std::atoi(cluster_.Cli(n, {"DBSIZE"}).c_str());
  }
  EXPECT_EQ(stored, kKeys);
  for (int i = 0; i < kKeys; i += 7) {
    const std::string key = "key:" + std::to_string(i);
    int owner = cluster_.MasterOf(KeySlot(key));
    ASSERT_GE(owner, 0);
    EXPECT_EQ(client.OwnerOf(KeySlot(key)), Addr(owner)) << key;
    EXPECT_EQ(CountKeysInSlot(owner, KeySlot(key)), 1) << key;
    Reply got = KeyRoundtrip(client, key, {"GET", key});
    EXPECT_EQ(got.str, std::to_string(i));
  }
  EXPECT_EQ(client.stats().moved, 0u);
  EXPECT_EQ(client.stats().ask, 0u);
  EXPECT_EQ(client.stats().maps, 1u);
}

// A hash tag keeps a multi-key script on one node (the future Redis broker's EVALSHA form).
TEST_F(ClusterClientTest, HashTaggedKeysRunTogether) {
  MakeCluster(3, 0);
  Recorder rec;
  ClusterClient client(ClusterOptions(), &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec));
  Reply r = KeyRoundtrip(client, "{stream:1}",
                         {"EVAL",
                          "redis.call('SET', KEYS[1], 'a'); return redis.call('RPUSH', "
                          "KEYS[2], 'b')",
                          "2", "{stream:1}:meta", "{stream:1}:log"});
  EXPECT_EQ(r.type, Reply::Type::kInteger) << r.str;
  EXPECT_EQ(r.integer, 1);
  Reply range = KeyRoundtrip(client, "{stream:1}", {"LRANGE", "{stream:1}:log", "0", "-1"});
  ASSERT_EQ(range.elements.size(), 1u);
  EXPECT_EQ(range.elements[0].str, "b");
}

// The slot moved after the client read the map: the old owner's MOVED is followed once, and the
// map is corrected so the next command goes straight to the new owner.
TEST_F(ClusterClientTest, MovedIsFollowedAndRemembered) {
  MakeCluster(3, 0);
  Recorder rec;
  ClusterClient client(ClusterOptions(), &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec));
  const std::string key = "moved-key";
  const int slot = KeySlot(key);
  const int from = cluster_.MasterOf(slot);
  ASSERT_GE(from, 0);
  const int to = (from + 1) % 3;
  ASSERT_EQ(client.OwnerOf(static_cast<uint16_t>(slot)), Addr(from));
  // The slot is empty: every master is told its new owner. The new owner gets the highest config
  // epoch and the old owner stops claiming the slot first: otherwise the old owner's gossip (with a
  // higher epoch) can win the slot back on a node already told, and that node would keep sending
  // the client to the old owner.
  const std::string bumped = cluster_.Cli(to, {"CLUSTER", "BUMPEPOCH"});
  ASSERT_TRUE(bumped.rfind("BUMPED", 0) == 0 || bumped.rfind("STILL", 0) == 0) << bumped;
  for (int n : {from, to, 3 - from - to}) {
    ASSERT_EQ(cluster_.Cli(n, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", Id(to)}),
              "OK\n");
  }
  ASSERT_TRUE(cluster_.WaitHealthy(std::chrono::seconds(20), slot)) << cluster_.Logs();
  ASSERT_EQ(cluster_.MasterOf(slot), to);
  Reply r = KeyRoundtrip(client, key, {"SET", key, "v"});
  EXPECT_EQ(r.str, "OK");
  EXPECT_EQ(client.stats().moved, 1u);
  EXPECT_EQ(client.OwnerOf(static_cast<uint16_t>(slot)), Addr(to));
  EXPECT_EQ(CountKeysInSlot(to, slot), 1);
  EXPECT_EQ(CountKeysInSlot(from, slot), 0);
  Reply again = KeyRoundtrip(client, key, {"GET", key});
  EXPECT_EQ(again.str, "v");
  EXPECT_EQ(client.stats().moved, 1u) << "the second command went straight to the new owner";
}

// A slot being migrated: the source answers ASK for a key it does not hold; the client sends
// ASKING + the command to the target and leaves its map alone.
TEST_F(ClusterClientTest, AskIsFollowedWithoutChangingTheMap) {
  MakeCluster(3, 0);
  Recorder rec;
  ClusterClient client(ClusterOptions(), &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec));
  const std::string key = "ask-key";
  const int slot = KeySlot(key);
  const int from = cluster_.MasterOf(slot);
  ASSERT_GE(from, 0);
  const int to = (from + 1) % 3;
  ASSERT_EQ(cluster_.Cli(to, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", Id(from)}),
            "OK\n");
  ASSERT_EQ(cluster_.Cli(from, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", Id(to)}),
            "OK\n");
  Reply r = KeyRoundtrip(client, key, {"SET", key, "v"});
  EXPECT_EQ(r.str, "OK");
  EXPECT_EQ(client.stats().ask, 1u);
  EXPECT_EQ(client.stats().moved, 0u);
  EXPECT_EQ(client.OwnerOf(static_cast<uint16_t>(slot)), Addr(from)) << "ASK leaves the map";
  EXPECT_EQ(CountKeysInSlot(to, slot), 1) << "the key was written on the importing node";
}

// Two masters that each name the other as the slot's owner: the client gives up after five
// redirections and returns the last MOVED.
TEST_F(ClusterClientTest, RedirectionsAreBounded) {
  MakeCluster(3, 0);
  Recorder rec;
  ClusterClient client(ClusterOptions(), &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec));
  const std::string key = "loop-key";
  const int slot = KeySlot(key);
  const int owner = cluster_.MasterOf(slot);
  ASSERT_GE(owner, 0);
  const int other = (owner + 1) % 3;
  // The owner alone is told `other` has it; `other` still believes the owner does.
  ASSERT_EQ(cluster_.Cli(owner, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", Id(other)}),
            "OK\n");
  Reply r = KeyRoundtrip(client, key, {"SET", key, "v"});
  ASSERT_TRUE(r.is_error()) << r.str;
  EXPECT_EQ(r.str.rfind("MOVED " + std::to_string(slot) + " ", 0), 0u) << r.str;
  EXPECT_EQ(client.stats().moved, 5u);
}

// A master dies and nobody takes over (no replicas): commands for its slots fail at once instead
// of waiting on a dead node, while the other masters keep serving.
TEST_F(ClusterClientTest, DeadNodeFailsFast) {
  MakeCluster(3, 0);
  Recorder rec;
  Options options = ClusterOptions();
  options.cluster_node_retry_ms = 600000;  // the node stays "down" for the whole test
  ClusterClient client(options, &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec));
  std::string dead_key, live_key;
  int dead = -1;
  for (int i = 0; i < 1000 && (dead_key.empty() || live_key.empty()); ++i) {
    const std::string k = "df:" + std::to_string(i);
    const int owner = cluster_.MasterOf(KeySlot(k));
    if (dead < 0) dead = owner;
    if (owner == dead && dead_key.empty()) dead_key = k;
    if (owner != dead && live_key.empty()) live_key = k;
  }
  ASSERT_FALSE(dead_key.empty() || live_key.empty());
  ASSERT_EQ(KeyRoundtrip(client, dead_key, {"SET", dead_key, "1"}).str, "OK");
  cluster_.node(static_cast<size_t>(dead)).Kill();
  Reply first = KeyRoundtrip(client, dead_key, {"SET", dead_key, "2"});
  ASSERT_TRUE(first.is_error());
  EXPECT_EQ(first.str.rfind("connection lost: ", 0), 0u) << first.str;
  Reply second = KeyRoundtrip(client, dead_key, {"GET", dead_key});
  EXPECT_EQ(second.str, "connection lost: node " + Addr(dead) + " is down");
  EXPECT_EQ(client.stats().node_lost, 1u);
  EXPECT_EQ(KeyRoundtrip(client, live_key, {"SET", live_key, "ok"}).str, "OK")
      << "the other masters keep serving";
  EXPECT_EQ(client.state(), Client::State::kReady);
}

// A manual CLUSTER FAILOVER changes nothing a keyless command notices (the demoted master still
// takes PUBLISH): the periodic re-read moves the client to the new master by itself.
TEST_F(ClusterClientTest, PeriodicRefreshFollowsAManualFailover) {
  MakeCluster(3, 1);
  Recorder rec;
  Options options = ClusterOptions();
  options.cluster_refresh_ms = 200;
  ClusterClient client(options, &rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(client, rec));
  const int slot = KeySlot("news");
  const int master = cluster_.MasterOf(slot);
  ASSERT_GE(master, 0);
  ASSERT_EQ(client.OwnerOf(static_cast<uint16_t>(slot)), Addr(master));
  int replica = -1;
  for (size_t n = 0; n < cluster_.size() && replica < 0; ++n) {
    std::string info = cluster_.Cli(n, {"INFO", "replication"});
    if (info.find("master_port:" + std::to_string(cluster_.node(master).port())) !=
        std::string::npos)
      replica = static_cast<int>(n);
  }
  ASSERT_GE(replica, 0);
  ASSERT_EQ(cluster_.Cli(static_cast<size_t>(replica), {"CLUSTER", "FAILOVER"}), "OK\n");
  // CLUSTER FAILOVER only starts the handover: wait (bounded) until the replica owns the slot.
  const auto failover_deadline = std::chrono::steady_clock::now() + 30s;
  while (cluster_.MasterOf(slot) != replica &&
         std::chrono::steady_clock::now() < failover_deadline) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(cluster_.MasterOf(slot), replica) << cluster_.Logs();
  ASSERT_TRUE(cluster_.WaitHealthy(30s, slot));
  // PUBLISH to the demoted master still works: no redirection tells the client anything.
  bool done = false;
  client.Command({"PUBLISH", "news", "x"}, [&](Reply&& r) {
    EXPECT_FALSE(r.is_error()) << r.str;
    done = true;
  });
  ASSERT_TRUE(loop_.Until(client, [&] { return done; }));
  ASSERT_TRUE(loop_.Until(
      client, [&] { return client.OwnerOf(static_cast<uint16_t>(slot)) == Addr(replica); }, 20s))
      << "the periodic re-read must find the new master";
  EXPECT_EQ(client.stats().moved, 0u);
}

TEST_F(ClusterClientTest, CommandsBeforeConnectFail) {
  Recorder rec;
  ClusterClient client(ParseUrl("redis://127.0.0.1:1,redis://127.0.0.1:2", "").value(), &rec,
                       "cmd");
  Reply got = Reply::Error("not called");
  client.KeyCommand("k", {"GET", "k"}, [&](Reply&& r) { got = std::move(r); });
  EXPECT_EQ(got.str, "redis cluster cmd: not connected");
}

TEST_F(ClusterClientTest, NoNodeAnsweringClosesWithEveryReason) {
  const int a = test::FreePort();
  const int b = test::FreePort();
  Recorder rec;
  ClusterClient client(
      ParseUrl("redis://127.0.0.1:" + std::to_string(a) + ",127.0.0.1:" + std::to_string(b), "")
          .value(),
      &rec, "cmd");
  EXPECT_FALSE(ConnectAndWait(client, rec));
  ASSERT_EQ(rec.closed.size(), 1u);
  const std::string& why = rec.closed[0];
  EXPECT_EQ(why.rfind("no cluster node answered CLUSTER SLOTS: ", 0), 0u) << why;
  EXPECT_NE(why.find("127.0.0.1:" + std::to_string(a) + ": connect"), std::string::npos) << why;
  EXPECT_NE(why.find("127.0.0.1:" + std::to_string(b) + ": connect"), std::string::npos) << why;
  EXPECT_NE(why.find("refused"), std::string::npos) << why;
  EXPECT_EQ(client.state(), Client::State::kClosed);
}

TEST_F(ClusterClientTest, StandaloneServersAreNotACluster) {
  BrokerProcess one(BrokerProcess::Kind::kRedis);
  BrokerProcess two(BrokerProcess::Kind::kRedis);
  ASSERT_TRUE(one.Start() && two.Start());
  Recorder rec;
  ClusterClient client(ParseUrl(one.url() + "," + two.url(), "").value(), &rec, "cmd");
  EXPECT_FALSE(ConnectAndWait(client, rec));
  ASSERT_EQ(rec.closed.size(), 1u);
  EXPECT_NE(rec.closed[0].find("cluster support disabled"), std::string::npos) << rec.closed[0];
}

// Classic pub/sub is cluster-wide: one subscribe connection, on one master, hears publications
// made on every node.
TEST_F(ClusterClientTest, SubscribeConnectionHearsEveryNode) {
  MakeCluster(3, 0);
  Recorder rec;
  ClusterClient sub(ClusterOptions(), &rec, "sub");
  sub.SetSubscribeMode();
  rec.on_ready = [](Client& c) { c.Command({"SUBSCRIBE", "news"}); };
  ASSERT_TRUE(ConnectAndWait(sub, rec));
  const auto masters = sub.Masters();
  EXPECT_NE(std::find(masters.begin(), masters.end(), sub.SubscribeNode()), masters.end())
      << sub.SubscribeNode();
  ASSERT_TRUE(loop_.Until(sub, [&] { return rec.pushes.size() == 1; }));  // the confirmation
  for (size_t n = 0; n < cluster_.size(); ++n) {
    EXPECT_EQ(cluster_.Cli(n, {"PUBLISH", "news", "from " + std::to_string(n)}).empty(), false);
  }
  ASSERT_TRUE(loop_.Until(sub, [&] { return rec.pushes.size() == 4; }))
      << rec.pushes.size() << " pushes";
  for (size_t n = 0; n < cluster_.size(); ++n) {
    const Reply& m = rec.pushes[n + 1];
    ASSERT_EQ(m.elements.size(), 3u);
    EXPECT_EQ(m.elements[0].str, "message");
    EXPECT_EQ(m.elements[1].str, "news");
    EXPECT_EQ(m.elements[2].str, "from " + std::to_string(n));
  }
}

// A master dies and its replica takes over: commands for its slots reach the new master, and a
// subscribe connection that lived on the dead node closes, reconnects elsewhere and hears again.
TEST_F(ClusterClientTest, FailoverReachesThePromotedReplica) {
  MakeCluster(3, 1);
  Recorder cmd_rec;
  ClusterClient cmd(ClusterOptions(), &cmd_rec, "cmd");
  ASSERT_TRUE(ConnectAndWait(cmd, cmd_rec));
  Recorder sub_rec;
  ClusterClient sub(ClusterOptions(), &sub_rec, "sub");
  sub.SetSubscribeMode();
  sub_rec.on_ready = [](Client& c) { c.Command({"SUBSCRIBE", "news"}); };
  ASSERT_TRUE(ConnectAndWait(sub, sub_rec));

  // Kill the master the subscriptions live on; the key is chosen on that master too.
  const std::string victim_addr = sub.SubscribeNode();
  int victim = -1;
  for (size_t n = 0; n < cluster_.size(); ++n) {
    if (Addr(static_cast<int>(n)) == victim_addr) victim = static_cast<int>(n);
  }
  ASSERT_GE(victim, 0) << victim_addr;
  std::string key;
  for (int i = 0; i < 1000 && key.empty(); ++i) {
    std::string k = "fo:" + std::to_string(i);
    if (cluster_.MasterOf(KeySlot(k)) == victim) key = k;
  }
  ASSERT_FALSE(key.empty());
  ASSERT_EQ(KeyRoundtrip(cmd, key, {"SET", key, "before"}).str, "OK");
  ASSERT_EQ(cluster_.Cli(static_cast<size_t>(victim), {"WAIT", "1", "5000"}), "1\n");

  cluster_.node(static_cast<size_t>(victim)).Kill();
  ASSERT_TRUE(loop_.Until(sub, [&] { return !sub_rec.closed.empty(); }))
      << "the subscribe connection must notice its node died";
  EXPECT_NE(sub_rec.closed[0].find("subscribe node " + victim_addr), std::string::npos)
      << sub_rec.closed[0];
  ASSERT_TRUE(cluster_.WaitHealthy(30s, KeySlot(key))) << cluster_.Logs();
  const int promoted = cluster_.MasterOf(KeySlot(key));
  ASSERT_GE(promoted, 0);
  ASSERT_NE(promoted, victim);

  // Commands: the first ones may fail while the client learns the new map (bounded).
  Reply r = Reply::Error("not tried");
  for (int attempt = 0; attempt < 100 && r.str != "OK"; ++attempt) {
    r = KeyRoundtrip(cmd, key, {"SET", key, "after"});
    if (r.str != "OK")
      loop_.Until(
          cmd, [] { return false; }, 100ms);
  }
  EXPECT_EQ(r.str, "OK");
  EXPECT_EQ(cmd.OwnerOf(KeySlot(key)), Addr(promoted));
  EXPECT_EQ(KeyRoundtrip(cmd, key, {"GET", key}).str, "after");
  EXPECT_GE(cmd.stats().node_lost, 1u);
  EXPECT_GE(cmd.stats().maps, 2u);

  // The subscribe client reconnects (as its owner's backoff would) on a live node.
  sub_rec.ready = 0;
  for (int attempt = 0; attempt < 10 && sub_rec.ready == 0; ++attempt) {
    sub_rec.closed.clear();
    ConnectAndWait(sub, sub_rec);
  }
  ASSERT_EQ(sub_rec.ready, 1) << (sub_rec.closed.empty() ? "" : sub_rec.closed.back());
  EXPECT_NE(sub.SubscribeNode(), victim_addr);
  const size_t before = sub_rec.pushes.size();
  ASSERT_TRUE(loop_.Until(sub, [&] { return sub_rec.pushes.size() == before + 1; }));
  EXPECT_EQ(cluster_.Cli(static_cast<size_t>(promoted), {"PUBLISH", "news", "again"}).empty(),
            false);
  ASSERT_TRUE(loop_.Until(sub, [&] { return sub_rec.pushes.size() == before + 2; }));
  EXPECT_EQ(sub_rec.pushes.back().elements[2].str, "again");
}

}  // namespace
}  // namespace cable::redis
