// HTTP publisher of ringcable-load: POSTs broadcast bodies over one keep-alive connection with
// blocking I/O and per-request timeouts (https:// through OpenSSL on the same blocking socket).
// Used by the parent process only.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "options.h"

namespace cable::load {

class Publisher {
 public:
  Publisher(const Endpoint& endpoint, std::string key) : ep_(endpoint), key_(std::move(key)) {}
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // POSTs body and waits for the response; returns the HTTP status or a one-line error.
  Result<int, std::string> Post(std::string_view body, double timeout_s);

 private:
  Result<int, std::string> Exchange(const std::string& request, double timeout_s, bool* sent_any);
  void Close();

  Endpoint ep_;
  std::string key_;
  int fd_ = -1;
  void* ssl_ctx_ = nullptr;  // SSL_CTX* for https://, made on first use
  void* ssl_ = nullptr;      // SSL* of the open connection (https://)
};

// The broadcast body for publication `seq`:
// {"stream":S,"data":"{\"seq\":..,\"ts\":..,\"pad\":..}"}.
std::string PublicationBody(std::string_view stream, uint64_t seq, int64_t ts_ns,
                            std::string_view pad);
// Publications first_seq .. first_seq+count-1, all stamped ts_ns: one object when count is 1,
// else AnyCable's batch, a JSON array of those objects.
std::string BatchBody(std::string_view stream, uint64_t first_seq, int count, int64_t ts_ns,
                      std::string_view pad);

// n bytes of Turbo Stream-like HTML (<turbo-stream action='append'> ... with words from a small
// vocabulary in a fixed pseudo-random order; attributes single-quoted, so it needs no JSON escaping
// at either level of a broadcast body). The same n gives the same text.
std::string TurboPad(size_t n);

// A TCP connect to the endpoint with a timeout; "" on success, else strerror text.
std::string ProbeTcp(const Endpoint& endpoint, double timeout_s);

}  // namespace cable::load
