// Helpers for the TLS and compression integration tests: a throwaway self-signed certificate made
// with the openssl CLI, the server flags for public $pubsub streams with HTTP broadcasts on the
// main port, Prometheus scraping, and raw-deflate helpers (RFC 7692 framing) built on zlib.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace cable::ittls {

// A temporary directory with cert.pem / key.pem (EC P-256, CN=localhost) and other.pem (a second
// key that matches nothing). Removed by the destructor. ok() is false when openssl failed.
class CertDir {
 public:
  CertDir();
  ~CertDir();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string cert() const { return dir_ + "/cert.pem"; }
  std::string key() const { return dir_ + "/key.pem"; }
  std::string other_key() const { return dir_ + "/other.pem"; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  bool ok_ = false;
  std::string error_;
};

inline constexpr const char* kBroadcastKey = "tls-test-key";

// --noauth --public_streams with HTTP broadcasts on the main port (a key is set) and metrics.
std::vector<std::string> PublicArgs();
// {"channel":"$pubsub","stream_name":<stream>}
std::string PubsubId(const std::string& stream);
std::string SubscribeCommand(const std::string& identifier);
// {"stream":<s>,"data":<data as a JSON string>}
std::string Publication(const std::string& stream, const std::string& data_json);
// The frame a subscriber gets for it.
std::string Delivered(const std::string& identifier, const std::string& data_json);

// Sum of a per-worker Prometheus series (`name{...worker="N"}`) over workers; -1 if absent.
long long SumSeries(const std::string& metrics_text, const std::string& name);

}  // namespace cable::ittls
