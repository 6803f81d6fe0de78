// Settings of the gRPC RPC client (anycable-go `--rpc_*` flags). Plain data: built once by the
// config module at startup and copied into the client; never shared between threads afterwards.
#pragma once

#include <string>

namespace cable::rpc {

struct Options {
  // "host:port" and "dns:///host:port" (gRPC's DNS resolver, round robin over every address),
  // "grpc://host:port" (same as host:port), "grpc-list://h1:p1,h2:p2" (resolved once at Create,
  // round robin over the addresses), "unix:/path", or any other gRPC target URI (ipv4:, ipv6:).
  std::string host = "localhost:50051";
  int concurrency = 28;           // global limit on calls in flight; <= 0 means the default 28
  int request_timeout_ms = 0;     // deadline of one attempt; 0 = the rest of command_timeout_ms
  int command_timeout_ms = 3000;  // the whole retry loop of one call
  bool enable_tls = false;
  bool tls_verify = true;
  std::string tls_root_ca;  // file path or PEM text; empty = system roots
  int max_recv_size = 0;    // 0 = gRPC default (4 MiB)
  int max_send_size = 0;    // 0 = gRPC default (unlimited)
};

}  // namespace cable::rpc
