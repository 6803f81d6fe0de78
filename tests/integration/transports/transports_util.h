// Test helpers for the HTTP transports: a raw HTTP/1.1 client that reads a streamed response
// (chunked or not) and splits an SSE body into events. Every wait is bounded.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "core_fixture.h"

namespace cable::ittransports {

using namespace std::chrono_literals;

struct SseEvent {
  std::string event;  // "" for data events
  std::string data;   // data lines joined with '\n'
  std::string id;
  std::string retry;
};

class HttpStream {
 public:
  HttpStream() = default;
  ~HttpStream();
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  // Connects to 127.0.0.1:port and sends `request` (a complete HTTP request).
  bool Open(int port, const std::string& request);
  // GET `target` with `headers` (Host and Accept: text/event-stream added).
  bool Get(int port, const std::string& target,
           const std::map<std::string, std::string>& headers = {});
  // Reads the response head; false on timeout / EOF.
  bool ReadHead(std::chrono::milliseconds timeout = 5s);
  // The next SSE event of the body, or nullopt on timeout / end of stream.
  std::optional<SseEvent> NextEvent(std::chrono::milliseconds timeout = 5s);
  // The next data event (typed events such as pings skipped).
  std::optional<SseEvent> NextData(std::chrono::milliseconds timeout = 5s);
  // The next event of type `type` (others skipped).
  std::optional<SseEvent> NextOfType(const std::string& type,
                                     std::chrono::milliseconds timeout = 5s);
  // true once the server closed the connection (EOF) within `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout = 5s);
  // true when the chunked body ended with its last chunk.
  bool body_ended() const { return body_ended_; }
  void Close();

  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;  // decoded body received so far (consumed events are removed)

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline);  // more bytes; false at EOF/deadline
  void Decode();                                              // in_ → body (chunked or plain)
  int fd_ = -1;
  bool eof_ = false;
  bool chunked_ = false;
  bool body_ended_ = false;
  std::string in_;
};

std::string HttpGetRequest(const std::string& target,
                           const std::map<std::string, std::string>& headers = {});
std::string HttpPostRequest(const std::string& target, const std::string& body,
                            const std::map<std::string, std::string>& headers = {});

// A Prometheus metric's value from `--metrics_http /metrics` on `port` (-1 when absent).
long long MetricValue(int port, const std::string& name);

}  // namespace cable::ittransports
