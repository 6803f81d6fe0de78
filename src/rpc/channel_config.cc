#include "rpc/channel_config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <grpc/grpc.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

namespace cable::rpc {
namespace {

constexpr std::string_view kGrpcListScheme = "grpc-list://";
constexpr std::string_view kGrpcScheme = "grpc://";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsIpv4Literal(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

struct HostPort {
  std::string host;
  std::string port;
};

cable::Result<HostPort, std::string> SplitHostPort(std::string_view entry) {
  HostPort hp;
  if (!entry.empty() && entry.front() == '[') {
    size_t close = entry.find(']');
    if (close == std::string_view::npos) {
      return cable::MakeError("grpc-list: unterminated '[' in '" + std::string(entry) + "'");
    }
    hp.host = std::string(entry.substr(1, close - 1));
    std::string_view rest = entry.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return cable::MakeError("grpc-list: address '" + std::string(entry) + "' has no port");
    }
    hp.port = std::string(rest.substr(1));
  } else {
    size_t colon = entry.rfind(':');
    if (colon == std::string_view::npos) {
      return cable::MakeError("grpc-list: address '" + std::string(entry) + "' has no port");
    }
    hp.host = std::string(entry.substr(0, colon));
    hp.port = std::string(entry.substr(colon + 1));
  }
  if (hp.host.empty()) {
    return cable::MakeError("grpc-list: address '" + std::string(entry) + "' has no host");
  }
  bool numeric =
      !hp.port.empty() && hp.port.size() <= 5 &&
      std::all_of(hp.port.begin(), hp.port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!numeric || std::stoi(hp.port) < 1 || std::stoi(hp.port) > 65535) {
    return cable::MakeError("grpc-list: bad port in '" + std::string(entry) + "'");
  }
  return hp;
}

}  // namespace

cable::Result<std::vector<std::string>, std::string> ResolveWithGetaddrinfo(
    const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    return cable::MakeError("cannot resolve '" + host + "': " + gai_strerror(rc));
  }
  std::vector<std::string> out;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* src = nullptr;
    if (ai->ai_family == AF_INET) {
      src = &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      src = &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (inet_ntop(ai->ai_family, src, buf, sizeof(buf)) == nullptr) continue;
    if (std::find(out.begin(), out.end(), buf) == out.end()) out.emplace_back(buf);
  }
  freeaddrinfo(res);
  if (out.empty()) return cable::MakeError("cannot resolve '" + host + "': no addresses");
  return out;
}

cable::Result<std::string, std::string> ResolveTarget(const std::string& host,
                                                      const HostResolver& resolver) {
  std::string_view h = Trim(host);
  if (h.empty()) return cable::MakeError(std::string("rpc host is empty"));
  if (StartsWith(h, "http://") || StartsWith(h, "https://")) {
    return cable::MakeError("HTTP RPC is not supported by the gRPC client: " + std::string(h));
  }
  if (StartsWith(h, kGrpcScheme)) h.remove_prefix(kGrpcScheme.size());
  if (!StartsWith(h, kGrpcListScheme)) {
    if (h.empty()) return cable::MakeError("rpc host is empty: " + host);
    return std::string(h);
  }

  std::string_view list = h.substr(kGrpcListScheme.size());
  if (Trim(list).empty()) return cable::MakeError("grpc-list: no addresses in '" + host + "'");
  std::vector<std::pair<std::string, std::string>> addrs;  // (ip literal, port)
  while (true) {
    size_t comma = list.find(',');
    std::string_view entry = Trim(list.substr(0, comma));
    if (entry.empty()) return cable::MakeError("grpc-list: empty address in '" + host + "'");
    auto hp = SplitHostPort(entry);
    if (!hp.ok()) return cable::MakeError(hp.error());
    auto ips = resolver(hp->host);
    if (!ips.ok()) return cable::MakeError("grpc-list: " + ips.error());
    std::vector<std::string> v4;
    std::vector<std::string> v6;
    for (const std::string& ip : ips.value()) (IsIpv4Literal(ip) ? v4 : v6).push_back(ip);
    // Prefer IPv4: "localhost" yields 127.0.0.1 and ::1, which are the same server twice.
    for (const std::string& ip : v4.empty() ? v6 : v4) {
      std::pair<std::string, std::string> a{ip, hp->port};
      if (std::find(addrs.begin(), addrs.end(), a) == addrs.end()) addrs.push_back(std::move(a));
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  bool any_v4 = false;
  bool any_v6 = false;
  for (const auto& a : addrs) (IsIpv4Literal(a.first) ? any_v4 : any_v6) = true;
  std::string out = any_v6 ? "ipv6:" : "ipv4:";
  for (size_t i = 0; i < addrs.size(); ++i) {
    if (i > 0) out += ',';
    if (!any_v6) {
      out += addrs[i].first + ":" + addrs[i].second;
    } else if (IsIpv4Literal(addrs[i].first)) {
      out += "[::ffff:" + addrs[i].first + "]:" + addrs[i].second;
    } else {
      out += "[" + addrs[i].first + "]:" + addrs[i].second;
    }
  }
  return out;
}

std::vector<ChannelArg> BuildChannelArgs(const Options& options) {
  std::vector<ChannelArg> args = {
      {GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs},
      // Pings without calls are what a default server counts as abuse.
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0},
      // 0 = the client itself never stops pinging for lack of data; the server-side limit is
      // what matters and is respected by the interval above.
      {GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0},
      // Each channel gets its own subchannels, hence its own HTTP/2 connection; otherwise all
      // channels to one target would share a single connection through the global pool.
      {GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1},
      // Spread over every resolved address (dns:///, grpc-list://), as anycable-go does.
      {GRPC_ARG_LB_POLICY_NAME, std::string("round_robin")},
      {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs},
      {GRPC_ARG_PRIMARY_USER_AGENT_STRING, std::string("ringcable")},
      // Retries are ours (Dispatcher, anycable-go's policy); gRPC's retry filter would also
      // buffer every request message per call.
      {GRPC_ARG_ENABLE_RETRIES, 0},
      // BDP probing pings the server on reads to grow HTTP/2 windows for bulk transfers; our
      // messages are small, and the pings and their acks cost ~5 % of a connect's CPU. Large
      // replies still flow, through ordinary WINDOW_UPDATEs.
      {GRPC_ARG_HTTP2_BDP_PROBE, 0},
  };
  if (options.max_recv_size > 0) {
    args.push_back({GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, options.max_recv_size});
  }
  if (options.max_send_size > 0) {
    args.push_back({GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, options.max_send_size});
  }
  return args;
}

grpc::ChannelArguments ToGrpcArguments(const std::vector<ChannelArg>& args) {
  grpc::ChannelArguments out;
  for (const ChannelArg& a : args) {
    if (const int* i = std::get_if<int>(&a.value)) {
      out.SetInt(a.key, *i);
    } else {
      out.SetString(a.key, std::get<std::string>(a.value));
    }
  }
  return out;
}

cable::Result<std::string, std::string> LoadRootCa(const std::string& value) {
  if (value.find("-----BEGIN") != std::string::npos) return value;
  std::ifstream in(value, std::ios::binary);
  if (!in) {
    return cable::MakeError("rpc_tls_root_ca: cannot read '" + value +
                            "': " + std::strerror(errno));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  if (pem.find("-----BEGIN CERTIFICATE") == std::string::npos) {
    return cable::MakeError("rpc_tls_root_ca: '" + value + "' holds no PEM certificate");
  }
  return pem;
}

cable::Result<std::shared_ptr<grpc::ChannelCredentials>, std::string> BuildCredentials(
    const Options& options) {
  if (!options.enable_tls) return grpc::InsecureChannelCredentials();
  std::string roots;
  if (!options.tls_root_ca.empty()) {
    auto pem = LoadRootCa(options.tls_root_ca);
    if (!pem.ok()) return cable::MakeError(pem.error());
    roots = std::move(pem.value());
  }
  if (options.tls_verify) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = roots;  // empty = gRPC's bundled/system roots
    return grpc::SslCredentials(ssl);
  }
  // tls_verify = false (anycable-go: InsecureSkipVerify). Only the experimental TLS credentials of
  // gRPC 1.51 can skip the chain check: verify_server_certs(false) drops the chain validation and
  // the no-op verifier plus check_call_host(false) drop the host name check.
  grpc::experimental::TlsChannelCredentialsOptions tls;
  if (!roots.empty()) {
    tls.set_certificate_provider(
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(roots));
    tls.watch_root_certs();
  }
  tls.set_verify_server_certs(false);
  tls.set_check_call_host(false);
  tls.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  auto creds = grpc::experimental::TlsCredentials(tls);
  if (creds == nullptr) {
    return cable::MakeError(std::string("rpc: gRPC refused TLS options with tls_verify=false"));
  }
  return creds;
}

int ChannelCount(int concurrency) { return std::clamp((concurrency + 31) / 32, 2, 4); }

}  // namespace cable::rpc
