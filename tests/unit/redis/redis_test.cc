// redis::Connection against real redis-server processes (plain, requirepass, db select, pub/sub,
// Sentinel, TLS) driven by a tiny epoll loop, plus ParseUrl tables. Every wait is bounded.
#include "redis/redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/brokers.h"
#include "tests/support/test_support.h"
#include "tests/unit/redis/redis_loop.h"

namespace cable::redis {
namespace {

using namespace std::chrono_literals;
using test::BrokerProcess;
using test::RedisCli;

// ---------------------------------------------------------------- ParseUrl

Options MustParse(const std::string& url, const std::string& sentinels = "") {
  auto r = ParseUrl(url, sentinels);
  EXPECT_TRUE(r.ok()) << url << ": " << (r.ok() ? "" : r.error());
  return r.ok() ? r.value() : Options{};
}

TEST(ParseUrl, GoodForms) {
  struct Case {
    std::string url;
    std::string host;
    int port;
    std::string user, password;
    int db;
    bool tls;
  };
  const std::vector<Case> cases = {
      {"redis://localhost:6379", "localhost", 6379, "", "", 0, false},
      {"redis://example.com", "example.com", 6379, "", "", 0, false},
      {"redis://h:7000/", "h", 7000, "", "", 0, false},
      {"redis://:s3cret@h:7000/2", "h", 7000, "", "s3cret", 2, false},
      {"redis://user:pass@h", "h", 6379, "user", "pass", 0, false},
      {"redis://us%3Aer:p%40ss%2Fw@h:1/15", "h", 1, "us:er", "p@ss/w", 15, false},
      {"rediss://secure.example:6380/1", "secure.example", 6380, "", "", 1, true},
      {"REDIS://h", "h", 6379, "", "", 0, false},
      {"redis://[::1]:6390/4", "::1", 6390, "", "", 4, false},
      {"redis://[::1]", "::1", 6379, "", "", 0, false},
      {"redis://:p@[fe80::1]:7/3", "fe80::1", 7, "", "p", 3, false},
      {"redis://", "localhost", 6379, "", "", 0, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    Options o = MustParse(c.url);
    EXPECT_EQ(o.host, c.host);
    EXPECT_EQ(o.port, c.port);
    EXPECT_EQ(o.username, c.user);
    EXPECT_EQ(o.password, c.password);
    EXPECT_EQ(o.db, c.db);
    EXPECT_EQ(o.tls, c.tls);
    EXPECT_FALSE(o.sentinel_mode());
  }
}

TEST(ParseUrl, BadForms) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://h:6379", "--redis_url: unsupported scheme \"http\" (want redis:// or rediss://)"},
      {"redis://h:abc", "bad port \"abc\""},
      {"redis://h:", "bad port \"\""},
      {"redis://h:0", "bad port \"0\""},
      {"redis://h:70000", "bad port \"70000\""},
      {"redis://h:6379/abc", "bad database \"/abc\""},
      {"redis://h:6379/-1", "bad database"},
      {"redis://h/1/2", "bad database"},
      {"redis://:%zz@h", "bad percent-encoding in the password"},
      {"redis://:ab%4@h", "bad percent-encoding in the password"},
      {"redis://[::1:6379", "unterminated IPv6"},
      {"redis://::1:6379", "IPv6 address needs brackets"},
  };
  for (const auto& [url, want] : cases) {
    SCOPED_TRACE(url);
    auto r = ParseUrl(url, "");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().find(want), std::string::npos) << r.error();
    EXPECT_EQ(r.error().find('\n'), std::string::npos);
    EXPECT_EQ(r.error().rfind("--redis_url: ", 0), 0u) << r.error();
  }
}

TEST(ParseUrl, Sentinels) {
  Options o = MustParse("redis://:masterpw@mymaster/1", ":s3c@ h1:26380 , h2,[::1]:5");
  EXPECT_TRUE(o.sentinel_mode());
  EXPECT_EQ(o.host, "mymaster");
  EXPECT_EQ(o.password, "masterpw");
  EXPECT_EQ(o.sentinel_password, "s3c");
  EXPECT_EQ(o.db, 1);
  ASSERT_EQ(o.sentinels.size(), 3u);
  EXPECT_EQ(o.sentinels[0].host, "h1");
  EXPECT_EQ(o.sentinels[0].port, 26380);
  EXPECT_EQ(o.sentinels[1].host, "h2");
  EXPECT_EQ(o.sentinels[1].port, 26379);
  EXPECT_EQ(o.sentinels[2].host, "::1");
  EXPECT_EQ(o.sentinels[2].port, 5);
  std::string d = o.Describe();
  EXPECT_EQ(d, "sentinels h1:26380,h2:26379,[::1]:5 (master mymaster, db 1)");

  Options plain = MustParse("redis://mymaster", "h1:1");
  EXPECT_TRUE(plain.sentinel_password.empty());

  for (const auto& bad : {"h1:x", "h1,,h2", ":pw@", "h1:99999"}) {
    SCOPED_TRACE(bad);
    auto r = ParseUrl("redis://mymaster", bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().rfind("--redis_sentinels: ", 0), 0u) << r.error();
  }
}

TEST(ParseUrl, DescribeHidesThePassword) {
  Options o = MustParse("redis://admin:topsecret@h:7000/2");
  EXPECT_EQ(o.Describe(), "redis://h:7000/2");
  EXPECT_EQ(MustParse("rediss://:topsecret@[::1]").Describe(), "rediss://[::1]:6379/0");
  Options s = MustParse("redis://:topsecret@m", ":alsosecret@h:1");
  EXPECT_EQ(s.Describe().find("secret"), std::string::npos) << s.Describe();
}

Options LocalOptions(int port, const std::string& suffix = "") {
  auto r = ParseUrl("redis://127.0.0.1:" + std::to_string(port) + suffix, "");
  EXPECT_TRUE(r.ok());
  return r.ok() ? r.value() : Options{};
}

Options UrlOptions(const std::string& url) {
  auto r = ParseUrl(url, "");
  EXPECT_TRUE(r.ok()) << url;
  return r.ok() ? r.value() : Options{};
}

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis).empty()) {
      GTEST_SKIP() << "redis-server is not installed";
    }
  }
  bool StartBroker(const std::vector<std::string>& extra = {}) {
    bool ok = broker_.Start(extra);
    EXPECT_TRUE(ok) << broker_.Log();
    return ok;
  }
  bool ConnectAndWait(Client& conn, Recorder& rec) {
    conn.Connect();
    return loop_.Until(conn, [&] { return rec.ready > 0 || !rec.closed.empty(); }) && rec.ready > 0;
  }

  BrokerProcess broker_{BrokerProcess::Kind::kRedis};
  Loop loop_;
};

// ---------------------------------------------------------------- plain Redis

TEST_F(RedisTest, ConnectSetGetIncr) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "test");
  EXPECT_EQ(conn.state(), Connection::State::kIdle);
  EXPECT_EQ(conn.fd(), -1);
  ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
  EXPECT_EQ(conn.state(), Connection::State::kReady);

  Reply set = Roundtrip(loop_, conn, {"SET", "greeting", "hello world"});
  EXPECT_EQ(set.type, Reply::Type::kStatus);
  EXPECT_EQ(set.str, "OK");
  Reply get = Roundtrip(loop_, conn, {"GET", "greeting"});
  EXPECT_EQ(get.type, Reply::Type::kString);
  EXPECT_EQ(get.str, "hello world");
  for (int i = 1; i <= 3; ++i) {
    Reply incr = Roundtrip(loop_, conn, {"INCR", "counter"});
    EXPECT_EQ(incr.type, Reply::Type::kInteger);
    EXPECT_EQ(incr.integer, i);
  }
  EXPECT_EQ(Roundtrip(loop_, conn, {"GET", "missing"}).type, Reply::Type::kNil);
  Reply bad = Roundtrip(loop_, conn, {"NOSUCHCOMMAND", "x"});
  EXPECT_TRUE(bad.is_error());
  EXPECT_NE(bad.str.find("unknown command"), std::string::npos) << bad.str;
  // Binary-safe arguments and an array reply.
  std::string binary("a\0b\r\nc", 6);
  Roundtrip(loop_, conn, {"RPUSH", "list", binary, "two"});
  Reply range = Roundtrip(loop_, conn, {"LRANGE", "list", "0", "-1"});
  ASSERT_EQ(range.type, Reply::Type::kArray);
  ASSERT_EQ(range.elements.size(), 2u);
  EXPECT_EQ(range.elements[0].str, binary);
  EXPECT_EQ(range.elements[1].str, "two");
  EXPECT_EQ(RedisCli(broker_.port(), {"GET", "greeting"}), "hello world\n");
  EXPECT_TRUE(rec.closed.empty());
  EXPECT_EQ(conn.pending_commands(), 0u);
}

TEST_F(RedisTest, CommandsQueuedBeforeReadyAreSentOnceReady) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "test");
  std::vector<std::string> got;
  conn.Command({"SET", "early", "bird"}, [&](Reply&& r) { got.push_back(r.str); });
  conn.Command({"GET", "early"}, [&](Reply&& r) { got.push_back(r.str); });
  EXPECT_EQ(conn.pending_commands(), 2u);
  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return got.size() == 2; }));
  EXPECT_EQ(got, (std::vector<std::string>{"OK", "bird"}));
  EXPECT_EQ(rec.ready, 1);
}

TEST_F(RedisTest, PipelinedRepliesArriveInOrder) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "test");
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  constexpr int kCount = 5000;
  std::vector<int64_t> values;
  for (int i = 0; i < kCount; ++i) {
    conn.Command({"INCR", "seq"}, [&](Reply&& r) { values.push_back(r.integer); });
  }
  EXPECT_EQ(conn.pending_commands(), static_cast<size_t>(kCount));
  ASSERT_TRUE(loop_.Until(conn, [&] { return values.size() == kCount; }));
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(values[i], i + 1) << "at " << i;
  EXPECT_EQ(conn.pending_commands(), 0u);
}

TEST_F(RedisTest, LargeValueRoundTrip) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "test");
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  // 3 MiB: more than one write chunk and many bounded reads.
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7919) % 26);
  EXPECT_EQ(Roundtrip(loop_, conn, {"SET", "big", big}).str, "OK");
  Reply got = Roundtrip(loop_, conn, {"GET", "big"});
  ASSERT_EQ(got.type, Reply::Type::kString);
  EXPECT_EQ(got.str.size(), big.size());
  EXPECT_TRUE(got.str == big);
  EXPECT_EQ(Roundtrip(loop_, conn, {"STRLEN", "big"}).integer, static_cast<int64_t>(big.size()));
}

TEST_F(RedisTest, RequirePassGoodAndWrongPassword) {
  ASSERT_TRUE(StartBroker({"--requirepass", "s3cret"}));
  std::string hostport = "127.0.0.1:" + std::to_string(broker_.port());
  {
    Recorder rec;
    Connection conn(UrlOptions("redis://:s3cret@" + hostport), &rec, "good");
    ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
    EXPECT_EQ(Roundtrip(loop_, conn, {"PING"}).str, "PONG");
  }
  {
    // ACL form: AUTH <user> <password>.
    Recorder rec;
    Connection conn(UrlOptions("redis://default:s3cret@" + hostport), &rec, "acl");
    ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
    EXPECT_EQ(Roundtrip(loop_, conn, {"PING"}).str, "PONG");
  }
  {
    Recorder rec;
    Connection conn(UrlOptions("redis://:wrong@" + hostport), &rec, "bad");
    bool got_error = false;
    conn.Command({"PING"}, [&](Reply&& r) {
      got_error = r.is_error() && r.str.rfind("connection lost: ", 0) == 0;
    });
    conn.Connect();
    ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
    EXPECT_EQ(rec.ready, 0);
    EXPECT_NE(rec.closed[0].find("WRONGPASS"), std::string::npos) << rec.closed[0];
    EXPECT_TRUE(got_error);
    EXPECT_EQ(conn.state(), Connection::State::kClosed);
    EXPECT_EQ(conn.fd(), -1);
  }
}

TEST_F(RedisTest, SelectsTheDatabaseFromTheUrl) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port(), "/3"), &rec, "db3");
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  EXPECT_EQ(Roundtrip(loop_, conn, {"SET", "k", "in-db-3"}).str, "OK");
  EXPECT_EQ(RedisCli(broker_.port(), {"-n", "3", "GET", "k"}), "in-db-3\n");
  EXPECT_EQ(RedisCli(broker_.port(), {"-n", "0", "EXISTS", "k"}), "0\n");

  Recorder bad_rec;
  Connection bad(LocalOptions(broker_.port(), "/99"), &bad_rec, "db99");
  bad.Connect();
  ASSERT_TRUE(loop_.Until(bad, [&] { return !bad_rec.closed.empty(); }));
  EXPECT_EQ(bad_rec.ready, 0);
  EXPECT_NE(bad_rec.closed[0].find("SELECT 99"), std::string::npos) << bad_rec.closed[0];
  EXPECT_NE(bad_rec.closed[0].find("out of range"), std::string::npos) << bad_rec.closed[0];
}

TEST_F(RedisTest, SubscribeModeDeliversPushes) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "sub");
  conn.SetSubscribeMode();
  rec.on_ready = [](Client& c) { c.Command({"SUBSCRIBE", "alpha", "beta"}); };
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  ASSERT_TRUE(loop_.Until(conn, [&] { return rec.pushes.size() >= 2; }));
  EXPECT_EQ(conn.pending_commands(), 0u);
  for (int i = 0; i < 2; ++i) {
    const Reply& confirm = rec.pushes[i];
    ASSERT_EQ(confirm.type, Reply::Type::kArray);
    ASSERT_EQ(confirm.elements.size(), 3u);
    EXPECT_EQ(confirm.elements[0].str, "subscribe");
    EXPECT_EQ(confirm.elements[1].str, i == 0 ? "alpha" : "beta");
    EXPECT_EQ(confirm.elements[2].integer, i + 1);
  }
  EXPECT_EQ(RedisCli(broker_.port(), {"PUBLISH", "beta", "payload one"}), "1\n");
  EXPECT_EQ(RedisCli(broker_.port(), {"PUBLISH", "alpha", "payload two"}), "1\n");
  ASSERT_TRUE(loop_.Until(conn, [&] { return rec.pushes.size() >= 4; }));
  const Reply& m1 = rec.pushes[2];
  ASSERT_EQ(m1.elements.size(), 3u);
  EXPECT_EQ(m1.elements[0].str, "message");
  EXPECT_EQ(m1.elements[1].str, "beta");
  EXPECT_EQ(m1.elements[2].str, "payload one");
  EXPECT_EQ(rec.pushes[3].elements[1].str, "alpha");
  EXPECT_EQ(rec.pushes[3].elements[2].str, "payload two");
  conn.Command({"PING"});
  ASSERT_TRUE(loop_.Until(conn, [&] { return rec.pushes.size() >= 5; }));
  EXPECT_EQ(rec.pushes[4].elements[0].str, "pong");
}

TEST_F(RedisTest, ConnectionRefused) {
  Recorder rec;
  Connection conn(LocalOptions(test::FreePort()), &rec, "refused");
  bool failed = false;
  conn.Command({"PING"}, [&](Reply&& r) { failed = r.is_error(); });
  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  EXPECT_NE(rec.closed[0].find("refused"), std::string::npos) << rec.closed[0];
  EXPECT_TRUE(failed);
  EXPECT_EQ(conn.state(), Connection::State::kClosed);
  EXPECT_EQ(conn.fd(), -1);
}

TEST_F(RedisTest, BrokerKilledWithCommandsPendingThenRestart) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "kill");
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  // BLPOP on an empty list blocks server-side: its reply can only be the error.
  std::vector<std::string> errors;
  for (const char* list : {"nothing1", "nothing2"}) {
    conn.Command({"BLPOP", list, "0"}, [&](Reply&& r) {
      EXPECT_TRUE(r.is_error());
      errors.push_back(r.str);
    });
  }
  ASSERT_TRUE(loop_.Until(conn, [&] { return (conn.events() & EPOLLOUT) == 0; }));
  broker_.Kill();
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& e : errors) EXPECT_EQ(e.rfind("connection lost: ", 0), 0u) << e;
  EXPECT_EQ(rec.closed.size(), 1u);
  EXPECT_EQ(conn.state(), Connection::State::kClosed);
  EXPECT_EQ(conn.pending_commands(), 0u);

  ASSERT_TRUE(broker_.Restart()) << broker_.Log();
  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return rec.ready == 2 || rec.closed.size() > 1; }));
  ASSERT_EQ(rec.ready, 2) << rec.closed.back();
  EXPECT_EQ(Roundtrip(loop_, conn, {"PING"}).str, "PONG");
}

TEST_F(RedisTest, CloseFromInsideACallbackFailsTheRestAndCanReconnect) {
  ASSERT_TRUE(StartBroker());
  Recorder rec;
  Connection conn(LocalOptions(broker_.port()), &rec, "reentrant");
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  std::vector<std::string> got;
  conn.Command({"SET", "a", "1"}, [&](Reply&& r) {
    got.push_back(r.str);
    conn.Close();
    // Queued while closed: sent after the next Connect.
    conn.Command({"GET", "a"}, [&](Reply&& r2) { got.push_back("after:" + r2.str); });
  });
  conn.Command({"PING"}, [&](Reply&& r) { got.push_back(r.str); });
  conn.Command({"PING"}, [&](Reply&& r) { got.push_back(r.str); });
  ASSERT_TRUE(loop_.Until(conn, [&] { return got.size() == 3; }));
  EXPECT_EQ(got[0], "OK");
  EXPECT_EQ(got[1], "connection lost: closed");
  EXPECT_EQ(got[2], "connection lost: closed");
  EXPECT_TRUE(rec.closed.empty());  // Close() does not call OnClosed
  EXPECT_EQ(conn.state(), Connection::State::kClosed);
  EXPECT_EQ(conn.pending_commands(), 1u);

  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return got.size() == 4; }));
  EXPECT_EQ(got[3], "after:1");
  EXPECT_EQ(rec.ready, 2);
}

// A loopback listener that never accepts: the kernel completes the TCP handshake, then silence.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(RedisTest, ConnectTimeoutWhileWaitingForAuth) {
  SilentListener silent;
  Options opts = UrlOptions("redis://:pw@127.0.0.1:" + std::to_string(silent.port()));
  opts.connect_timeout_ms = 200;
  Recorder rec;
  Connection conn(opts, &rec, "timeout");
  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  EXPECT_NE(rec.closed[0].find("timed out after 200 ms"), std::string::npos) << rec.closed[0];
  EXPECT_EQ(rec.ready, 0);
}

TEST_F(RedisTest, ConnectTimeoutDuringTlsHandshake) {
  SilentListener silent;
  Options opts = UrlOptions("rediss://127.0.0.1:" + std::to_string(silent.port()));
  opts.connect_timeout_ms = 200;
  Recorder rec;
  Connection conn(opts, &rec, "tls-timeout");
  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  EXPECT_NE(rec.closed[0].find("timed out"), std::string::npos) << rec.closed[0];
}

TEST_F(RedisTest, ProtocolErrorClosesTheConnection) {
  SilentListener fake;
  Options opts = UrlOptions("redis://:pw@127.0.0.1:" + std::to_string(fake.port()));
  Recorder rec;
  Connection conn(opts, &rec, "garbage");
  conn.Connect();
  int peer = accept4(fake.fd(), nullptr, nullptr, SOCK_CLOEXEC);  // already queued by the kernel
  ASSERT_GE(peer, 0);
  std::string junk = "!garbage\r\n";
  ASSERT_EQ(send(peer, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  EXPECT_NE(rec.closed[0].find("protocol error"), std::string::npos) << rec.closed[0];
  close(peer);
}

// ---------------------------------------------------------------- child processes

// A redis-server started with our own command line (Sentinel, TLS), stopped by PID.
class Child {
 public:
  ~Child() { Stop(); }
  bool Start(const std::vector<std::string>& argv, const std::string& log_path) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    pid_ = cable::test::SpawnProcess(argv, {}, fd, fd);
    close(fd);
    return pid_ > 0;
  }
  bool exited() {
    int status;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
    return pid_ <= 0;
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/ringcable-redis-test-XXXXXX";
    path = mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    if (!path.empty()) test::RunCommand({"/bin/rm", "-rf", path}, 10s);
  }
  std::string path;
};

bool TcpAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A redis-server in Sentinel mode monitoring `master_port` as "mymaster"; stopped by PID.
class Sentinel {
 public:
  // `password`: the sentinel's own requirepass ("" for none).
  bool Start(int master_port, const std::string& password) {
    if (dir_.path.empty()) return false;
    port_ = test::FreePort();
    password_ = password;
    std::string conf = dir_.path + "/sentinel.conf";
    {
      std::ofstream out(conf);
      out << "port " << port_ << "\nbind 127.0.0.1\ndaemonize no\ndir " << dir_.path
          << "\nsentinel monitor mymaster 127.0.0.1 " << master_port << " 1\n";
      if (!password.empty()) out << "requirepass " << password << "\n";
    }
    if (!child_.Start({BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis), conf, "--sentinel"},
                      dir_.path + "/sentinel.log")) {
      return false;
    }
    for (int i = 0; i < 500 && !child_.exited(); ++i) {
      if (Cli({"PING"}) == "PONG\n") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  std::string Cli(std::vector<std::string> args) const {
    if (!password_.empty()) args.insert(args.begin(), {"--no-auth-warning", "-a", password_});
    return RedisCli(port_, args);
  }
  int port() const { return port_; }
  std::string Log() const { return ReadFile(dir_.path + "/sentinel.log"); }

 private:
  TempDir dir_;
  Child child_;
  int port_ = 0;
  std::string password_;
};

TEST_F(RedisTest, SentinelFindsTheMaster) {
  ASSERT_TRUE(StartBroker());
  Sentinel sentinel;
  ASSERT_TRUE(sentinel.Start(broker_.port(), "")) << sentinel.Log();

  // The first sentinel is down: the connection moves on to the next one.
  std::string sentinels = "127.0.0.1:" + std::to_string(test::FreePort()) +
                          ", 127.0.0.1:" + std::to_string(sentinel.port());
  auto parsed = ParseUrl("redis://mymaster/2", sentinels);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  Recorder rec;
  Connection conn(parsed.value(), &rec, "sentinel");
  ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
  EXPECT_EQ(Roundtrip(loop_, conn, {"SET", "via", "sentinel"}).str, "OK");
  EXPECT_EQ(RedisCli(broker_.port(), {"-n", "2", "GET", "via"}), "sentinel\n");

  auto unknown = ParseUrl("redis://nosuchmaster", "127.0.0.1:" + std::to_string(sentinel.port()));
  ASSERT_TRUE(unknown.ok());
  Recorder unknown_rec;
  Connection lost(unknown.value(), &unknown_rec, "unknown");
  lost.Connect();
  ASSERT_TRUE(loop_.Until(lost, [&] { return !unknown_rec.closed.empty(); }));
  EXPECT_EQ(unknown_rec.closed[0].rfind("no sentinel knows master nosuchmaster: ", 0), 0u)
      << unknown_rec.closed[0];
  EXPECT_EQ(unknown_rec.ready, 0);
}

TEST_F(RedisTest, SentinelPasswordAndMasterPassword) {
  ASSERT_TRUE(StartBroker({"--requirepass", "masterpw"}));
  Sentinel sentinel;
  ASSERT_TRUE(sentinel.Start(broker_.port(), "sentinelpw")) << sentinel.Log();
  std::string at = "127.0.0.1:" + std::to_string(sentinel.port());

  auto good = ParseUrl("redis://:masterpw@mymaster", ":sentinelpw@" + at);
  ASSERT_TRUE(good.ok()) << good.error();
  Recorder rec;
  Connection conn(good.value(), &rec, "sentinel-auth");
  ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
  EXPECT_EQ(Roundtrip(loop_, conn, {"PING"}).str, "PONG");

  auto wrong = ParseUrl("redis://:masterpw@mymaster", ":nope@" + at);
  ASSERT_TRUE(wrong.ok());
  Recorder wrong_rec;
  Connection denied(wrong.value(), &wrong_rec, "sentinel-denied");
  denied.Connect();
  ASSERT_TRUE(loop_.Until(denied, [&] { return !wrong_rec.closed.empty(); }));
  EXPECT_EQ(wrong_rec.closed[0].rfind("no sentinel knows master mymaster: ", 0), 0u)
      << wrong_rec.closed[0];
  EXPECT_NE(wrong_rec.closed[0].find("WRONGPASS"), std::string::npos) << wrong_rec.closed[0];
}

// ---------------------------------------------------------------- TLS

class RedisTlsTest : public RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_FALSE(dir_.path.empty());
    auto gen = test::RunCommand(
        {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout",
         dir_.path + "/key.pem", "-out", cert()},
        30s);
    if (gen.exit_code != 0) GTEST_SKIP() << "cannot make a certificate: " << gen.output;
    port_ = test::FreePort();
    ASSERT_TRUE(server_.Start({BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis),
                               "--port",
                               "0",
                               "--tls-port",
                               std::to_string(port_),
                               "--bind",
                               "127.0.0.1",
                               "--tls-cert-file",
                               cert(),
                               "--tls-key-file",
                               dir_.path + "/key.pem",
                               "--tls-ca-cert-file",
                               cert(),
                               "--tls-auth-clients",
                               "no",
                               "--save",
                               "",
                               "--appendonly",
                               "no",
                               "--dir",
                               dir_.path,
                               "--daemonize",
                               "no"},
                              dir_.path + "/redis.log"));
    for (int i = 0; i < 500; ++i) {
      if (server_.exited()) break;
      if (TcpAccepts(port_)) return;
      std::this_thread::sleep_for(20ms);
    }
    std::string log = ReadFile(dir_.path + "/redis.log");
    if (server_.exited()) GTEST_SKIP() << "redis-server without TLS support? " << log;
    FAIL() << "TLS redis-server did not start: " << log;
  }
  std::string cert() const { return dir_.path + "/cert.pem"; }

  TempDir dir_;
  Child server_;
  int port_ = 0;
};

TEST_F(RedisTlsTest, SetGetOverTls) {
  Recorder rec;
  Connection conn(UrlOptions("rediss://127.0.0.1:" + std::to_string(port_)), &rec, "tls");
  ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
  EXPECT_EQ(Roundtrip(loop_, conn, {"SET", "secure", "value"}).str, "OK");
  EXPECT_EQ(Roundtrip(loop_, conn, {"GET", "secure"}).str, "value");
  // Large enough for partial TLS writes and reads past the per-call budget.
  std::string big(2 * 1024 * 1024 + 3, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('A' + i % 26);
  EXPECT_EQ(Roundtrip(loop_, conn, {"SET", "big", big}).str, "OK");
  Reply got = Roundtrip(loop_, conn, {"GET", "big"});
  EXPECT_TRUE(got.str == big) << got.str.size();
  std::vector<int64_t> values;
  for (int i = 0; i < 2000; ++i) {
    conn.Command({"INCR", "n"}, [&](Reply&& r) { values.push_back(r.integer); });
  }
  ASSERT_TRUE(loop_.Until(conn, [&] { return values.size() == 2000; }));
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(values[i], i + 1);
}

TEST_F(RedisTlsTest, VerificationWithTheRightCaPasses) {
  for (const char* host : {"127.0.0.1", "localhost"}) {
    SCOPED_TRACE(host);
    Options opts = UrlOptions(std::string("rediss://") + host + ":" + std::to_string(port_));
    opts.tls_verify = true;
    opts.tls_ca_cert_path = cert();
    Recorder rec;
    Connection conn(opts, &rec, "verify");
    ASSERT_TRUE(ConnectAndWait(conn, rec)) << (rec.closed.empty() ? "" : rec.closed[0]);
    EXPECT_EQ(Roundtrip(loop_, conn, {"PING"}).str, "PONG");
  }
}

TEST_F(RedisTlsTest, VerificationWithoutTheCaFails) {
  Options opts = UrlOptions("rediss://127.0.0.1:" + std::to_string(port_));
  opts.tls_verify = true;  // system CAs do not know our self-signed certificate
  Recorder rec;
  Connection conn(opts, &rec, "verify-fail");
  conn.Connect();
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  EXPECT_EQ(rec.ready, 0);
  EXPECT_NE(rec.closed[0].find("TLS handshake"), std::string::npos) << rec.closed[0];
  EXPECT_NE(rec.closed[0].find("certificate"), std::string::npos) << rec.closed[0];
}

TEST_F(RedisTlsTest, ServerKilledClosesTheTlsConnection) {
  Recorder rec;
  Connection conn(UrlOptions("rediss://127.0.0.1:" + std::to_string(port_)), &rec, "tls-kill");
  ASSERT_TRUE(ConnectAndWait(conn, rec));
  bool failed = false;
  conn.Command({"BLPOP", "empty", "0"}, [&](Reply&& r) { failed = r.is_error(); });
  ASSERT_TRUE(loop_.Until(conn, [&] { return (conn.events() & EPOLLOUT) == 0; }));
  server_.Stop();
  ASSERT_TRUE(loop_.Until(conn, [&] { return !rec.closed.empty(); }));
  EXPECT_TRUE(failed);
  EXPECT_EQ(conn.state(), Connection::State::kClosed);
}

}  // namespace
}  // namespace cable::redis
