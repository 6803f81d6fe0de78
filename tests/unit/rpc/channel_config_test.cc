// Target parsing, channel arguments, credentials and option validation of cable_rpc.
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <grpc/grpc.h>
#include <gtest/gtest.h>

#include "rpc/channel_config.h"
#include "rpc/client.h"

namespace cable::rpc {
namespace {

using Ips = std::vector<std::string>;

HostResolver FakeResolver(std::map<std::string, Ips> table) {
  return [table](const std::string& host) -> cable::Result<Ips, std::string> {
    auto it = table.find(host);
    if (it == table.end()) return cable::MakeError("cannot resolve '" + host + "': not found");
    return it->second;
  };
}

std::string Resolve(const std::string& host, const HostResolver& r) {
  auto t = ResolveTarget(host, r);
  return t.ok() ? t.value() : "ERROR: " + t.error();
}

TEST(ResolveTargetTest, PassesGrpcTargetsThrough) {
  auto r = FakeResolver({});
  EXPECT_EQ(Resolve("localhost:50051", r), "localhost:50051");
  EXPECT_EQ(Resolve("dns:///rpc.internal:50051", r), "dns:///rpc.internal:50051");
  EXPECT_EQ(Resolve("unix:/tmp/rpc.sock", r), "unix:/tmp/rpc.sock");
  EXPECT_EQ(Resolve("grpc://app:50051", r), "app:50051");
  EXPECT_EQ(Resolve("  app:50051 ", r), "app:50051");
}

TEST(ResolveTargetTest, GrpcListBecomesStaticIpv4List) {
  auto r = FakeResolver({{"a", {"10.0.0.1"}}, {"b", {"10.0.0.2", "10.0.0.3"}}});
  EXPECT_EQ(Resolve("grpc-list://a:50051,b:50052", r),
            "ipv4:10.0.0.1:50051,10.0.0.2:50052,10.0.0.3:50052");
  EXPECT_EQ(Resolve("grpc-list://a:1, a:1 ,a:2", r), "ipv4:10.0.0.1:1,10.0.0.1:2");
}

TEST(ResolveTargetTest, GrpcListPrefersIpv4PerHost) {
  auto r = FakeResolver({{"localhost", {"::1", "127.0.0.1"}}});
  EXPECT_EQ(Resolve("grpc-list://localhost:1,localhost:2", r), "ipv4:127.0.0.1:1,127.0.0.1:2");
}

TEST(ResolveTargetTest, GrpcListIpv6AndMixedFamilies) {
  auto r = FakeResolver({{"six", {"fd00::1"}}, {"four", {"10.0.0.1"}}, {"::1", {"::1"}}});
  EXPECT_EQ(Resolve("grpc-list://six:50051,[::1]:7", r), "ipv6:[fd00::1]:50051,[::1]:7");
  EXPECT_EQ(Resolve("grpc-list://six:1,four:2", r), "ipv6:[fd00::1]:1,[::ffff:10.0.0.1]:2");
}

TEST(ResolveTargetTest, GrpcListWithRealResolverOnLiterals) {
  EXPECT_EQ(Resolve("grpc-list://127.0.0.1:5000,127.0.0.2:5001", ResolveWithGetaddrinfo),
            "ipv4:127.0.0.1:5000,127.0.0.2:5001");
}

TEST(ResolveTargetTest, BadInputs) {
  auto r = FakeResolver({{"a", {"10.0.0.1"}}});
  EXPECT_EQ(Resolve("", r), "ERROR: rpc host is empty");
  EXPECT_EQ(Resolve("   ", r), "ERROR: rpc host is empty");
  EXPECT_EQ(Resolve("grpc://", r), "ERROR: rpc host is empty: grpc://");
  EXPECT_EQ(Resolve("http://app/_anycable", r),
            "ERROR: HTTP RPC is not supported by the gRPC client: http://app/_anycable");
  EXPECT_EQ(Resolve("https://app/_anycable", r),
            "ERROR: HTTP RPC is not supported by the gRPC client: https://app/_anycable");
  EXPECT_EQ(Resolve("grpc-list://", r), "ERROR: grpc-list: no addresses in 'grpc-list://'");
  EXPECT_EQ(Resolve("grpc-list://a:1,,a:2", r),
            "ERROR: grpc-list: empty address in 'grpc-list://a:1,,a:2'");
  EXPECT_EQ(Resolve("grpc-list://a:1,", r),
            "ERROR: grpc-list: empty address in 'grpc-list://a:1,'");
  EXPECT_EQ(Resolve("grpc-list://a", r), "ERROR: grpc-list: address 'a' has no port");
  EXPECT_EQ(Resolve("grpc-list://[::1]", r), "ERROR: grpc-list: address '[::1]' has no port");
  EXPECT_EQ(Resolve("grpc-list://[::1:5", r), "ERROR: grpc-list: unterminated '[' in '[::1:5'");
  EXPECT_EQ(Resolve("grpc-list://:50051", r), "ERROR: grpc-list: address ':50051' has no host");
  EXPECT_EQ(Resolve("grpc-list://a:", r), "ERROR: grpc-list: bad port in 'a:'");
  EXPECT_EQ(Resolve("grpc-list://a:x1", r), "ERROR: grpc-list: bad port in 'a:x1'");
  EXPECT_EQ(Resolve("grpc-list://a:0", r), "ERROR: grpc-list: bad port in 'a:0'");
  EXPECT_EQ(Resolve("grpc-list://a:65536", r), "ERROR: grpc-list: bad port in 'a:65536'");
  EXPECT_EQ(Resolve("grpc-list://a:123456", r), "ERROR: grpc-list: bad port in 'a:123456'");
  EXPECT_EQ(Resolve("grpc-list://a:1,b:2", r), "ERROR: grpc-list: cannot resolve 'b': not found");
}

std::map<std::string, std::variant<int, std::string>> ArgMap(const Options& o) {
  std::map<std::string, std::variant<int, std::string>> m;
  for (const ChannelArg& a : BuildChannelArgs(o)) {
    EXPECT_EQ(m.count(a.key), 0u) << "duplicate " << a.key;
    m[a.key] = a.value;
  }
  return m;
}

TEST(ChannelArgsTest, KeepaliveNeverProvokesTooManyPings) {
  auto m = ArgMap(Options{});
  // A default gRPC server rejects pings more often than every 5 minutes, and any ping while no
  // call is active.
  ASSERT_TRUE(m.count(GRPC_ARG_KEEPALIVE_TIME_MS));
  EXPECT_GE(std::get<int>(m[GRPC_ARG_KEEPALIVE_TIME_MS]), 300000);
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS]), 0);
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA]), 0);
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_KEEPALIVE_TIMEOUT_MS]), kKeepaliveTimeoutMs);
}

TEST(ChannelArgsTest, SeparateConnectionsRoundRobinAndNoMessageLimitsByDefault) {
  auto m = ArgMap(Options{});
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL]), 1);
  EXPECT_EQ(std::get<std::string>(m[GRPC_ARG_LB_POLICY_NAME]), "round_robin");
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_MAX_RECONNECT_BACKOFF_MS]), kMaxReconnectBackoffMs);
  EXPECT_EQ(m.count(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH), 0u);
  EXPECT_EQ(m.count(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH), 0u);
}

TEST(ChannelArgsTest, RetriesAndBdpProbingAreOff) {
  auto m = ArgMap(Options{});
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_ENABLE_RETRIES]), 0);
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_HTTP2_BDP_PROBE]), 0);
}

TEST(ChannelArgsTest, MessageSizesFromOptions) {
  Options o;
  o.max_recv_size = 8 << 20;
  o.max_send_size = 1 << 20;
  auto m = ArgMap(o);
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH]), 8 << 20);
  EXPECT_EQ(std::get<int>(m[GRPC_ARG_MAX_SEND_MESSAGE_LENGTH]), 1 << 20);
}

TEST(ChannelArgsTest, ConvertsToGrpcChannelArguments) {
  Options o;
  o.max_recv_size = 1234;
  grpc::ChannelArguments args = ToGrpcArguments(BuildChannelArgs(o));
  grpc_channel_args c_args;
  args.SetChannelArgs(&c_args);
  std::map<std::string, const grpc_arg*> by_key;
  for (size_t i = 0; i < c_args.num_args; ++i) by_key[c_args.args[i].key] = &c_args.args[i];
  ASSERT_TRUE(by_key.count(GRPC_ARG_KEEPALIVE_TIME_MS));
  EXPECT_EQ(by_key[GRPC_ARG_KEEPALIVE_TIME_MS]->value.integer, kKeepaliveTimeMs);
  ASSERT_TRUE(by_key.count(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH));
  EXPECT_EQ(by_key[GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH]->value.integer, 1234);
  ASSERT_TRUE(by_key.count(GRPC_ARG_LB_POLICY_NAME));
  EXPECT_STREQ(by_key[GRPC_ARG_LB_POLICY_NAME]->value.string, "round_robin");
}

TEST(ChannelCountTest, TwoToFour) {
  EXPECT_EQ(ChannelCount(1), 2);
  EXPECT_EQ(ChannelCount(28), 2);
  EXPECT_EQ(ChannelCount(64), 2);
  EXPECT_EQ(ChannelCount(65), 3);
  EXPECT_EQ(ChannelCount(128), 4);
  EXPECT_EQ(ChannelCount(100000), 4);
}

constexpr const char* kFakePem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

TEST(CredentialsTest, RootCaFromPemOrFile) {
  auto pem = LoadRootCa(kFakePem);
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem.value(), kFakePem);

  std::string path = ::testing::TempDir() + "rpc_root_ca.pem";
  { std::ofstream(path) << kFakePem; }
  auto file = LoadRootCa(path);
  ASSERT_TRUE(file.ok()) << file.error();
  EXPECT_EQ(file.value(), kFakePem);

  std::string junk = ::testing::TempDir() + "rpc_root_ca.txt";
  { std::ofstream(junk) << "not a cert"; }
  auto bad = LoadRootCa(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "rpc_tls_root_ca: '" + junk + "' holds no PEM certificate");
  std::remove(path.c_str());
  std::remove(junk.c_str());

  auto missing = LoadRootCa("/nonexistent/ca.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(),
            "rpc_tls_root_ca: cannot read '/nonexistent/ca.pem': No such file or directory");
}

TEST(CredentialsTest, EveryTlsCombinationBuilds) {
  Options o;
  EXPECT_TRUE(BuildCredentials(o).ok());
  o.enable_tls = true;
  EXPECT_TRUE(BuildCredentials(o).ok());
  o.tls_verify = false;
  EXPECT_TRUE(BuildCredentials(o).ok());
  o.tls_root_ca = kFakePem;
  EXPECT_TRUE(BuildCredentials(o).ok());
  o.tls_root_ca = "/nonexistent/ca.pem";
  auto bad = BuildCredentials(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(),
            "rpc_tls_root_ca: cannot read '/nonexistent/ca.pem': No such file or directory");
  o.enable_tls = false;  // the root CA is not even read without TLS
  EXPECT_TRUE(BuildCredentials(o).ok());
}

std::string CreateError(const Options& o) {
  auto c = Client::Create(o);
  return c.ok() ? "ok" : c.error();
}

TEST(ClientCreateTest, RejectsBadOptions) {
  Options o;
  o.request_timeout_ms = -1;
  EXPECT_EQ(CreateError(o), "rpc_request_timeout must be >= 0, got -1");
  o = Options{};
  o.command_timeout_ms = 0;
  EXPECT_EQ(CreateError(o), "rpc_command_timeout must be > 0, got 0");
  o = Options{};
  o.max_recv_size = -5;
  EXPECT_EQ(CreateError(o), "rpc_max_call_recv_size must be >= 0, got -5");
  o = Options{};
  o.max_send_size = -6;
  EXPECT_EQ(CreateError(o), "rpc_max_call_send_size must be >= 0, got -6");
  o = Options{};
  o.host = "http://";  // an http(s):// host selects the HTTP transport, which wants a host
  EXPECT_EQ(CreateError(o), "rpc_host: invalid URL 'http://'");
  o = Options{};
  o.enable_tls = true;
  o.tls_root_ca = "/nonexistent/ca.pem";
  EXPECT_EQ(CreateError(o),
            "rpc_tls_root_ca: cannot read '/nonexistent/ca.pem': No such file or directory");
}

}  // namespace
}  // namespace cable::rpc
