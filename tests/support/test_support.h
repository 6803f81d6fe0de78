// Test support: a blocking WebSocket client, an HTTP helper and a runner for the real ringcable
// binary. Every wait is bounded by a timeout so a broken server fails a test instead of hanging it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cable::test {

using namespace std::chrono_literals;

int FreePort();            // a currently unused loopback TCP port
std::string BinaryPath();  // $RINGCABLE_BIN, else $RINGCABLE_BIN_BUILT, else build/ringcable

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
};
// One request on a fresh connection ("Connection: close"). status 0 on connection failure.
HttpResponse HttpRequest(int port, const std::string& method, const std::string& path,
                         const std::map<std::string, std::string>& headers = {},
                         const std::string& body = "");
// The same over TLS (https://; the server's certificate is not verified: tests use self-signed
// ones). status 0 on connection or handshake failure.
HttpResponse HttpsRequest(int port, const std::string& method, const std::string& path,
                          const std::map<std::string, std::string>& headers = {},
                          const std::string& body = "");

// The real server binary, started with the given flags on loopback.
class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();
  // Before Start: the main port speaks TLS (--ssl_cert/--ssl_key), so /health is polled over https.
  void set_tls(bool on) { tls_ = on; }
  // Starts `ringcable --host 127.0.0.1 --port <free> <args>` and waits until /health answers.
  bool Start(const std::vector<std::string>& args, std::map<std::string, std::string> env = {});
  // SIGTERM; waits up to `timeout`; returns the exit status (or -1 if it had to be killed).
  int Stop(std::chrono::milliseconds timeout = 10s);
  void Kill();
  // Waits (bounded) for the process to exit on its own, e.g. after a live upgrade handed
  // everything to its successor; returns the exit status like Stop(), -1 if it is still running.
  int WaitExit(std::chrono::milliseconds timeout);
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const;  // stderr so far
  bool running();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool tls_ = false;
  std::string log_path_;
};

// Starts argv[0] (a path; searched in PATH when `search_path`) with `env` added to this process's
// environment, stdout to `out_fd` and stderr to `err_fd` (-1: inherited), and RLIMIT_NOFILE set
// when `nofile_limit` > 0. Everything is prepared before fork(): the child only calls dup2,
// setrlimit and execve, because the test process has other threads (gRPC in ScriptedRpcServer) and
// one of them may hold the allocator's lock at the fork, which would hang a child that allocates.
// Returns the pid, or -1.
pid_t SpawnProcess(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env, int out_fd, int err_fd,
                   long nofile_limit = 0, bool search_path = false);

// Runs a command to completion (bounded): exit code and combined stdout+stderr.
struct RunResult {
  int exit_code = -1;
  std::string output;
};
RunResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                     const std::map<std::string, std::string>& env = {});

struct WsFrame {
  int opcode = -1;    // 1 text, 2 binary, 8 close, 9 ping, 10 pong; -1 timeout/EOF
  bool rsv1 = false;  // permessage-deflate: the payload is compressed
  std::string payload;
  uint16_t close_code() const;
  std::string close_reason() const;
};

class WsClient {
 public:
  WsClient() = default;
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Before Connect: wss:// (TLS handshake first; the certificate is not verified).
  void set_tls(bool on) { tls_ = on; }
  // Before Connect: the client SSL_CTX* to use instead of the default one (cipher suites,
  // versions); not owned, must outlive the client.
  void set_tls_context(void* ssl_ctx) { tls_ctx_ = ssl_ctx; }
  // Opens a WebSocket at ws://127.0.0.1:port + path. Returns the HTTP status (101 on success).
  int Connect(int port, const std::string& path = "/cable",
              const std::map<std::string, std::string>& headers = {},
              const std::vector<std::string>& protocols = {"actioncable-v1-json"});
  const std::map<std::string, std::string>& response_headers() const { return response_headers_; }

  bool SendText(const std::string& payload);
  bool SendFrame(int opcode, const std::string& payload, bool fin = true, bool mask = true,
                 bool rsv1 = false);
  bool SendRaw(const std::string& bytes);
  // Next frame of any kind (pings included), or opcode -1 on timeout/EOF.
  WsFrame Next(std::chrono::milliseconds timeout = 5s);
  // Next text frame that is not an Action Cable ping; -1 on timeout/EOF/close (close kept in
  // last_close()).
  WsFrame NextMessage(std::chrono::milliseconds timeout = 5s);
  // Waits for a text message containing `needle`, skipping others; empty optional on timeout.
  std::optional<std::string> WaitFor(const std::string& needle,
                                     std::chrono::milliseconds timeout = 5s);
  // Waits for the close frame (skipping everything else).
  WsFrame WaitClose(std::chrono::milliseconds timeout = 5s);
  // True if the server closed the TCP connection within timeout (reads and discards data).
  bool WaitEof(std::chrono::milliseconds timeout = 5s);
  // wss: reads (discarding) until the TLS stream ends and returns SSL_get_error for that last
  // SSL_read: SSL_ERROR_ZERO_RETURN when the server sent close_notify, SSL_ERROR_SYSCALL or
  // SSL_ERROR_SSL when it just closed the socket; -1 on timeout or without TLS.
  int WaitTlsEnd(std::chrono::milliseconds timeout = 5s);
  const WsFrame& last_close() const { return last_close_; }
  void Close();
  int fd() const { return fd_; }
  void* ssl() const { return ssl_; }  // SSL* when wss (for tests that drive TLS themselves)

  // Action Cable helpers.
  bool Subscribe(const std::string& identifier);
  bool Perform(const std::string& identifier, const std::string& data_json);
  static std::string Identifier(const std::string& channel,
                                const std::map<std::string, std::string>& params = {});

 private:
  bool ReadMore(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  bool tls_ = false;
  void* ssl_ = nullptr;      // SSL* when tls_
  void* tls_ctx_ = nullptr;  // SSL_CTX* for the handshake; null = the shared default
  std::string buf_;
  std::map<std::string, std::string> response_headers_;
  WsFrame last_close_;
};

std::string JsonString(const std::string& s);  // JSON-quoted and escaped

}  // namespace cable::test
