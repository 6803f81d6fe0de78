// Turns rpc::Options into what gRPC needs to open channels: the target URI, the channel
// arguments and the credentials. Pure functions (ResolveTarget may call getaddrinfo), called once
// from Client::Create on the thread that builds the server; split out so they can be unit tested.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "common/result.h"
#include "rpc/options.h"

namespace cable::rpc {

// Keepalive. anycable-go pings every 10 s even without calls; a default C++/Ruby gRPC server
// (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS = 5 min, permit_without_calls = 0,
// max_ping_strikes = 2) answers that with GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
// (anycable-go#204, anycable-rails#214). So: ping only while calls are in flight, and never more
// often than the server's 5 minute floor (plus a margin for timer and network jitter).
inline constexpr int kKeepaliveTimeMs = 330000;
inline constexpr int kKeepaliveTimeoutMs = 20000;
// Reconnect backoff cap while no call waits. gRPC's default grows to 120 s; capped at about one
// command timeout. While calls wait (wait-for-ready), the dispatcher resets the backoff every
// 200 ms (ChannelResetConnectionBackoff), so a restarted app server is found at once.
inline constexpr int kMaxReconnectBackoffMs = 3000;
inline constexpr int kDefaultConcurrency = 28;

struct ChannelArg {
  std::string key;
  std::variant<int, std::string> value;
};

// Returns IP literals for a host name (both families allowed), or an error text.
using HostResolver =
    std::function<cable::Result<std::vector<std::string>, std::string>(const std::string& host)>;
// getaddrinfo(AF_UNSPEC, SOCK_STREAM), deduplicated, in resolver order.
cable::Result<std::vector<std::string>, std::string> ResolveWithGetaddrinfo(
    const std::string& host);

// Maps Options::host to a gRPC target URI. "grpc-list://" entries are resolved with `resolver`
// into one static "ipv4:"/"ipv6:" list (gRPC C++ has no grpc-list resolver); per host the IPv4
// addresses are used if there are any, and a list mixing families is written as IPv6 with
// v4-mapped addresses because a gRPC target URI holds a single family.
cable::Result<std::string, std::string> ResolveTarget(
    const std::string& host, const HostResolver& resolver = ResolveWithGetaddrinfo);

// Every channel argument the client sets, in a form tests can inspect.
std::vector<ChannelArg> BuildChannelArgs(const Options& options);
grpc::ChannelArguments ToGrpcArguments(const std::vector<ChannelArg>& args);

// Insecure, SslCredentials (tls_verify), or the experimental TlsCredentials with server
// certificate verification off (tls_verify = false; gRPC 1.51's SslCredentials cannot skip it).
cable::Result<std::shared_ptr<grpc::ChannelCredentials>, std::string> BuildCredentials(
    const Options& options);

// tls_root_ca is PEM text if it contains "-----BEGIN", else a file path holding PEM.
cable::Result<std::string, std::string> LoadRootCa(const std::string& value);

// How many HTTP/2 connections to spread calls over: 2..4, one per 32 concurrent calls.
int ChannelCount(int concurrency);

}  // namespace cable::rpc
