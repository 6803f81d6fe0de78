// Settings of the RPC client (anycable-go `--rpc_*` and `--http_rpc_*` flags). Plain data: built
// once by the config module at startup and copied into the client; never shared between threads
// afterwards.
#pragma once

#include <string>

namespace cable::rpc {

struct Options {
  // "host:port" and "dns:///host:port" (gRPC's DNS resolver, round robin over every address),
  // "grpc://host:port" (same as host:port), "grpc-list://h1:p1,h2:p2" (resolved once at Create,
  // round robin over the addresses), "unix:/path", or any other gRPC target URI (ipv4:, ipv6:).
  // An "http://" or "https://" URL selects RPC over HTTP: POSTs to <url>/connect, /command and
  // /disconnect (rpc/http_transport.h).
  std::string host = "localhost:50051";
  int concurrency = 28;  // global limit on calls in flight; <= 0 means the default 28
  // Deadline of one attempt; 0 = the rest of command_timeout_ms for gRPC, 3000 ms for HTTP.
  int request_timeout_ms = 0;
  int command_timeout_ms = 3000;  // the whole retry loop of one call
  bool enable_tls = false;
  bool tls_verify = true;
  std::string tls_root_ca;  // file path or PEM text; empty = system roots
  int max_recv_size = 0;    // 0 = 4 MiB (gRPC's default); HTTP: the response body limit
  int max_send_size = 0;    // 0 = gRPC default (unlimited); gRPC only
  std::string http_secret;  // HTTP only: sent as "Authorization: Bearer <secret>" when not empty
};

}  // namespace cable::rpc
