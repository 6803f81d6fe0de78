// Command-line options of ringcable-load. Parsed once in the parent before forking; workers get a
// copy. Callable from any thread; ParseOptions only touches the filesystem to check --server-pid.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace cable::load {

// kRestore: a reconnect storm. Connect and subscribe (ext protocol), drop every socket, publish
// --messages, then reconnect every client with its sid and catch up with `history` (measured).
enum class Mode { kConnect, kIdle, kBroadcast, kRestore };

const char* ModeName(Mode m);

struct Endpoint {
  in_addr_t addr = 0;     // network byte order, always inside 127.0.0.0/8
  uint16_t port = 0;      // host byte order
  std::string host_port;  // for the Host header
  std::string path;       // path and query, starts with '/'
  bool tls = false;       // https:// (broadcast URL; the certificate is not verified)
};

struct Options {
  Mode mode = Mode::kConnect;
  Endpoint url;      // --url ws://127.0.0.1:8080/cable (or wss://)
  bool tls = false;  // wss://: TLS to the server (its certificate is not verified)
  int connections = 1000;
  int processes = 0;   // 0 = ceil(connections / kMaxSocketsPerProcess)
  int source_ips = 0;  // 0 = ceil(connections / 20000) + 1
  double rate = 0;     // connects per second, 0 = unlimited
  int concurrency = 500;
  std::string identifier = R"({"channel":"BenchmarkChannel","stream":"bench"})";
  std::string stream;  // --stream, else the identifier's "stream"
  double duration = 10;
  int messages = 100;
  double msg_rate = 100;  // 0 = closed loop
  int batch = 1;          // publications per POST (AnyCable's JSON-array batch when > 1)
  int payload_size = 64;
  bool turbo = false;      // the padding is Turbo Stream-like HTML, not one repeated character
  Endpoint broadcast_url;  // --broadcast-url http://127.0.0.1:8090/_broadcast
  std::string broadcast_key;
  int server_pid = 0;
  double timeout = 60;
  bool progress = true;
  bool ext = false;  // --ext: speak actioncable-v1-ext-json (broker offsets in frames)
  // --sse: subscribe with Server-Sent Events (GET <url path>?identifier=..., --url http://...)
  // instead of a WebSocket; deliveries are the stream's data events.
  bool sse = false;
  bool compression = false;  // --compression: offer permessage-deflate, inflate what comes back
  bool help = false;
};

inline constexpr int kMaxSocketsPerProcess = 15000;

// Parses argv[1..]; fills every default that depends on other options. The error is one line
// without the program name, e.g. "--connections: expected an integer in [1, 1000000], got 'x'".
Result<Options, std::string> ParseOptions(const std::vector<std::string>& args);

Result<Endpoint, std::string> ParseUrl(const std::string& url, const std::string& scheme);

std::string HelpText();

}  // namespace cable::load
