// Worker: the Server-Sent Events transport (--sse, --sse_path; spec Appendix D, anycable-go's
// sse/*.go). A GET subscribes to one channel named by the query (identifier / channel / stream /
// signed_stream / turbo_signed_stream_name, with Last-Event-ID or history_since), a POST to the
// JSONL commands of its body. The session authenticates and subscribes exactly as a WebSocket
// session does (worker_session.cc); until every subscription is confirmed its replies wait in the
// send queue behind no response head, so a refusal is a plain 401/400. Then the 200 head goes out
// first and the queued events after it, as one chunked body that the stream keeps extending:
// each event is one chunk, and a broadcast's chunk is the shared frame of hub::Wire::kSse.
#include <charconv>
#include <cstring>

#include "common/log.h"
#include "protocol/transport_encode.h"
#include "server/worker.h"

namespace cable::server {
namespace {
constexpr size_t kMaxSseBody = 64 * 1024;  // anycable-go's defaultMaxBodySize

std::string JsonObject(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  std::string out = "{";
  for (const auto& [k, v] : kv) {
    if (out.size() > 1) out += ',';
    protocol::AppendJsonString(out, k);
    out += ':';
    protocol::AppendJsonString(out, v);
  }
  out += '}';
  return out;
}

bool ParseInt64(std::string_view s, int64_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

// The subscribe command of a GET, or an empty string when the query names no channel; false when
// Last-Event-ID or history_since cannot be read.
bool GetSubscribeCommand(const http::Request& req, std::string* identifier, std::string* command) {
  identifier->clear();
  if (auto v = http::QueryParam(req.query, "identifier"); v && !v->empty()) {
    *identifier = *v;
  } else if (auto ch = http::QueryParam(req.query, "channel"); ch && !ch->empty()) {
    *identifier = JsonObject({{"channel", *ch}});
  } else if (auto st = http::QueryParam(req.query, "stream"); st && !st->empty()) {
    *identifier = JsonObject({{"channel", "$pubsub"}, {"stream_name", *st}});
  } else if (auto ss = http::QueryParam(req.query, "signed_stream"); ss && !ss->empty()) {
    *identifier = JsonObject({{"channel", "$pubsub"}, {"signed_stream_name", *ss}});
  } else if (auto ts = http::QueryParam(req.query, "turbo_signed_stream_name");
             ts && !ts->empty()) {
    *identifier = JsonObject({{"channel", "Turbo::StreamsChannel"}, {"signed_stream_name", *ts}});
  }
  if (identifier->empty()) return true;
  // History: Last-Event-ID "<offset>/<epoch>/<stream>" (the id of the last event the client got),
  // and/or ?history_since=<unix seconds>.
  std::string history;
  if (auto last = req.Get("last-event-id"); last && !last->empty()) {
    std::string_view id = *last;
    size_t a = id.find('/');
    size_t b = a == std::string_view::npos ? a : id.find('/', a + 1);
    if (b != std::string_view::npos) {
      int64_t offset = 0;
      if (!ParseInt64(id.substr(0, a), &offset) || offset < 0) return false;
      history = "\"streams\":{";
      protocol::AppendJsonString(history, id.substr(b + 1));
      history += ":{\"epoch\":";
      protocol::AppendJsonString(history, id.substr(a + 1, b - a - 1));
      history += ",\"offset\":" + std::to_string(offset) + "}}";
    }
  }
  if (auto since = http::QueryParam(req.query, "history_since"); since && !since->empty()) {
    int64_t ts = 0;
    if (!ParseInt64(*since, &ts)) return false;
    if (!history.empty()) history += ',';
    history += "\"since\":" + std::to_string(ts);
  }
  *command = "{\"command\":\"subscribe\",\"identifier\":";
  protocol::AppendJsonString(*command, *identifier);
  if (!history.empty()) *command += ",\"history\":{" + history + "}";
  *command += '}';
  return true;
}
}  // namespace

Worker::BodyStatus Worker::ReadRequestBody(const std::string& buf, const http::Request& req,
                                           size_t max, std::string* body, size_t* total) {
  *total = req.head_size;
  if (req.chunked) {
    size_t consumed = 0;
    auto st =
        http::DecodeChunkedBody(std::string_view(buf).substr(req.head_size), max, body, &consumed);
    if (st == http::ParseStatus::kIncomplete) return BodyStatus::kIncomplete;
    if (st == http::ParseStatus::kError) {
      return body->size() > max ? BodyStatus::kTooLarge : BodyStatus::kBad;
    }
    *total += consumed;
    return BodyStatus::kOk;
  }
  size_t len = req.content_length.value_or(0);
  if (len > max) return BodyStatus::kTooLarge;
  if (buf.size() < req.head_size + len) return BodyStatus::kIncomplete;
  body->assign(buf, req.head_size, len);
  *total += len;
  return BodyStatus::kOk;
}

void Worker::RespondHttp(Conn& c, uint32_t slot, const http::Request& req, int status,
                         std::string_view body, std::string_view content_type,
                         std::vector<std::pair<std::string, std::string>> headers, bool close) {
  std::vector<std::pair<std::string, std::string>> all;
  AppendCorsHeaders(req, &all);
  for (auto& h : headers) all.push_back(std::move(h));
  if (close) c.keep_alive = false;
  EnqueueRaw(c, slot, http::BuildResponse(status, body, content_type, all, close));
}

bool Worker::HandleSse(Conn& c, uint32_t slot, const http::Request& req) {
  const bool get = req.method == "GET";
  const bool post = req.method == "POST";
  std::string body;
  size_t total = req.head_size;
  if (post) {
    switch (ReadRequestBody(c.http->buf, req, kMaxSseBody, &body, &total)) {
      case BodyStatus::kIncomplete:
        return false;
      case BodyStatus::kTooLarge:
        RespondHttp(c, slot, req, 413, http::StatusText(413), http::kDefaultContentType, {}, true);
        PauseReading(c, slot);
        return true;
      case BodyStatus::kBad:
        RespondHttp(c, slot, req, 400, http::StatusText(400), http::kDefaultContentType, {}, true);
        PauseReading(c, slot);
        return true;
      case BodyStatus::kOk:
        break;
    }
  }
  auto refuse = [&](int status) {
    RespondHttp(c, slot, req, status, status == 200 ? "" : http::StatusText(status),
                http::kDefaultContentType, {}, true);
    PauseReading(c, slot);
    return true;
  };
  if (req.method == "OPTIONS") return refuse(200);  // CORS preflight
  if (!get && !post) return refuse(405);
  if (stopping_) return refuse(503);

  // The subscribe commands, in order.
  std::vector<std::string> commands;
  std::vector<std::string> identifiers;
  if (get) {
    std::string identifier;
    std::string command;
    if (!GetSubscribeCommand(req, &identifier, &command)) return refuse(400);
    if (identifier.empty()) {
      LOG_DEBUG("SSE request without a channel: %.*s", static_cast<int>(req.target.size()),
                req.target.data());
      return refuse(400);
    }
    commands.push_back(std::move(command));
    identifiers.push_back(std::move(identifier));
  } else {
    // JSONL; as anycable-go, every command subscribes (to its identifier, with its history).
    for (std::string_view line : protocol::SplitJsonLines(body)) {
      auto decoded = decoder_.Decode(line);
      if (!decoded.ok() || decoded.value().identifier.empty()) return refuse(400);
      const protocol::ClientCommand& cmd = decoded.value();
      std::string command = "{\"command\":\"subscribe\",\"identifier\":";
      protocol::AppendJsonString(command, cmd.identifier);
      if (!cmd.history.empty()) command += ",\"history\":" + cmd.history;
      command += '}';
      commands.push_back(std::move(command));
      identifiers.push_back(cmd.identifier);
    }
  }

  auto session = NewSession(c, req, c.fd);
  c.transport = Transport::kSse;
  c.wire = get ? hub::Wire::kSse : hub::Wire::kSseFull;
  if (get) {
    auto raw = http::QueryParam(req.query, "raw");
    c.sse_raw = raw && (*raw == "1" || *raw == "true" || *raw == "t" || *raw == "y");
  }
  c.hold_output = true;
  c.keep_alive = false;  // the stream ends with the connection
  ApplyPingParams(c, req);
  const std::optional<std::string> jwt = ExtractJwt(cfg_, req, http::UpgradeRequest{});
  for (std::string& cmd : commands) {
    session->pending_bytes += static_cast<uint32_t>(cmd.size());
    session->pending.push_back(std::move(cmd));
  }
  // The request is consumed; c.http stays until the stream starts (it names the subscriptions
  // to wait for). Bytes after the request are never read as another request.
  c.http->buf.clear();
  c.http->sse_identifiers = std::move(identifiers);
  c.http->cors.clear();
  AppendCorsHeaders(req, &c.http->cors);
  c.http->deadline_ms = 0;
  c.session = std::move(session);
  counters_.sse_clients_num.Add(1);
  LOG_DEBUG("sid=%s SSE %s stream (%zu subscriptions)", c.session->sid.c_str(),
            get ? "GET" : "POST", c.http->sse_identifiers.size());
  StartSession(c, slot, jwt, "");
  return true;
}

void Worker::SseStart(Conn& c, uint32_t slot) {
  std::string head = "HTTP/1.1 200 OK\r\n";
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "text/event-stream; charset=utf-8"},
      {"Cache-Control", "private, no-cache, no-store, must-revalidate, max-age=0"},
      {"Pragma", "no-cache"},
      {"Expire", "0"},
      {"X-Accel-Buffering", "no"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-AnyCable-Version", shared_.version},
      {"Connection", "keep-alive"},
      {"Transfer-Encoding", "chunked"},
  };
  // CORS, as computed from the request when it was read.
  for (auto& h : c.http->cors) headers.push_back(std::move(h));
  for (const auto& [k, v] : headers) head.append(k).append(": ").append(v).append("\r\n");
  head += "\r\n";
  // Nothing was sent yet: the head goes in front of everything queued.
  hub::Frame* f = hub::Frame::NewLocal(head.size());
  std::memcpy(f->data(), head.data(), head.size());
  c.sendq.insert(c.sendq.begin() + c.sendq_head, f);
  c.pending_bytes += f->size();
  queued_bytes_ += f->size();
  c.hold_output = false;
  c.http.reset();
  MarkDirty(c, slot);
  LOG_DEBUG("sid=%s SSE stream started", c.session->sid.c_str());
}

void Worker::SseRefuse(Conn& c, uint32_t slot, int status) {
  // Nothing was sent: drop the held events and answer with the status alone.
  DropUnsentFrames(c);
  c.hold_output = false;
  std::vector<std::pair<std::string, std::string>> headers;
  if (c.http) headers = std::move(c.http->cors);
  c.http.reset();
  c.keep_alive = false;
  EnqueueRaw(c, slot,
             http::BuildResponse(status, http::StatusText(status), http::kDefaultContentType,
                                 headers, true));
  BeginClosing(c, slot);
}

}  // namespace cable::server
