#include "protocol/transport_encode.h"

#include <simdjson.h>

#include <cstdio>

#include "protocol/json_util.h"

namespace cable::protocol {
namespace {
// Retry interval that keeps an EventSource from reconnecting (a year), as anycable-go.
constexpr std::string_view kRetryNoReconnect = "31536000000";

thread_local simdjson::dom::parser t_parser;
thread_local internal::PaddedBuffer t_scratch;
thread_local std::string t_repaired;
}  // namespace

bool ParseReplyFields(std::string_view json, ReplyFields* out) {
  *out = ReplyFields{};
  std::string_view padded;
  simdjson::dom::element root;
  if (internal::ParseDom(t_parser, t_scratch, t_repaired, json, &root, &padded) !=
      simdjson::SUCCESS) {
    return false;
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return false;
  for (simdjson::dom::key_value_pair kv : obj) {
    if (kv.key == "type") {
      std::string_view t;
      if (kv.value.get_string().get(t) == simdjson::SUCCESS) out->type.assign(t);
    } else if (kv.key == "message") {
      // The DOM keeps no source spans: the value is written back as (minified) JSON text.
      out->has_message = true;
      out->message = simdjson::minify(kv.value);
    } else if (kv.key == "reconnect") {
      bool b = true;
      if (kv.value.get_bool().get(b) == simdjson::SUCCESS) out->reconnect = b;
    } else if (kv.key == "stream_id") {
      std::string_view t;
      if (kv.value.get_string().get(t) == simdjson::SUCCESS) out->stream_id.assign(t);
    } else if (kv.key == "epoch") {
      std::string_view t;
      if (kv.value.get_string().get(t) == simdjson::SUCCESS) out->epoch.assign(t);
    } else if (kv.key == "offset") {
      uint64_t o = 0;
      if (kv.value.get_uint64().get(o) == simdjson::SUCCESS) out->offset = o;
    }
  }
  return true;
}

std::string SseMessageText(std::string_view message_json) {
  std::string_view padded;
  simdjson::dom::element root;
  std::string_view s;
  if (internal::ParseDom(t_parser, t_scratch, t_repaired, message_json, &root, &padded) ==
          simdjson::SUCCESS &&
      root.get_string().get(s) == simdjson::SUCCESS) {
    return std::string(s);
  }
  return std::string(message_json);
}

void AppendSseEvent(std::string& out, std::string_view event, std::string_view data,
                    std::string_view id, bool no_reconnect) {
  if (!event.empty()) out.append("event: ").append(event).append("\n");
  // Every line of the payload is a data line (CRLF, CR and LF all end a line in SSE).
  size_t start = 0;
  for (;;) {
    size_t end = data.find_first_of("\r\n", start);
    out.append("data: ").append(
        data.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    out.push_back('\n');
    if (end == std::string_view::npos) break;
    start = end + 1;
    if (data[end] == '\r' && start < data.size() && data[start] == '\n') ++start;
  }
  if (!id.empty()) out.append("id: ").append(id).append("\n");
  if (no_reconnect) out.append("retry: ").append(kRetryNoReconnect).append("\n");
  out.push_back('\n');
}

std::string SseEventId(uint64_t offset, std::string_view epoch, std::string_view stream) {
  if (offset == 0 || epoch.empty() || stream.empty()) return {};
  std::string id = std::to_string(offset);
  id.append("/").append(epoch).append("/").append(stream);
  return id;
}

std::string HttpChunk(std::string_view body) {
  char head[24];
  int n = std::snprintf(head, sizeof(head), "%zx\r\n", body.size());
  std::string out;
  out.reserve(static_cast<size_t>(n) + body.size() + 2);
  out.append(head, static_cast<size_t>(n)).append(body).append("\r\n");
  return out;
}

std::string EncodeSseReply(std::string_view reply_json, bool unwrap, bool raw) {
  ReplyFields f;
  std::string event;
  if (!ParseReplyFields(reply_json, &f)) {
    AppendSseEvent(event, "", reply_json, "", false);
    return HttpChunk(event);
  }
  if (!f.type.empty() && raw) return {};
  const std::string id = SseEventId(f.offset, f.epoch, f.stream_id);
  const bool no_reconnect = f.type == "disconnect" && !f.reconnect;
  if (f.type.empty() && unwrap && f.has_message) {
    AppendSseEvent(event, "", SseMessageText(f.message), id, false);
  } else {
    AppendSseEvent(event, f.type, reply_json, id, no_reconnect);
  }
  return HttpChunk(event);
}

std::vector<std::string_view> SplitJsonLines(std::string_view body) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

std::string JsonLine(std::string_view reply_json) {
  std::string out(reply_json);
  for (char& ch : out) {
    if (ch == '\n' || ch == '\r') ch = ' ';
  }
  out.push_back('\n');
  return out;
}

}  // namespace cable::protocol
