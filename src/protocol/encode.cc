#include "protocol/encode.h"

#include <simdjson.h>

#include <array>
#include <charconv>
#include <cstring>
#include <vector>

#include "protocol/json_util.h"

namespace cable::protocol {

namespace {

// Per-byte class: 0 = copy as is, kUtf8 = start of a multi-byte (or invalid) sequence, otherwise
// the length of the ASCII escape sequence.
constexpr uint8_t kUtf8 = 0xFF;

constexpr std::array<uint8_t, 256> MakeClassTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 6;  // \u00XX
  t['\b'] = t['\f'] = t['\n'] = t['\r'] = t['\t'] = 2;
  t['"'] = t['\\'] = 2;
  t['<'] = t['>'] = t['&'] = 6;  // Go's HTML-safe escaping
  for (int c = 0x80; c < 0x100; ++c) t[c] = kUtf8;
  return t;
}
constexpr std::array<uint8_t, 256> kClass = MakeClassTable();

constexpr char kHex[] = "0123456789abcdef";

// Writes the escape for an ASCII byte whose class is non-zero; returns its length.
inline size_t AsciiEscape(unsigned char c, char* buf) {
  buf[0] = '\\';
  switch (c) {
    case '"':
      buf[1] = '"';
      return 2;
    case '\\':
      buf[1] = '\\';
      return 2;
    case '\b':
      buf[1] = 'b';
      return 2;
    case '\f':
      buf[1] = 'f';
      return 2;
    case '\n':
      buf[1] = 'n';
      return 2;
    case '\r':
      buf[1] = 'r';
      return 2;
    case '\t':
      buf[1] = 't';
      return 2;
    default:
      buf[1] = 'u';
      buf[2] = '0';
      buf[3] = '0';
      buf[4] = kHex[c >> 4];
      buf[5] = kHex[c & 0xF];
      return 6;
  }
}

struct StringSink {
  std::string& s;
  void Put(const char* p, size_t n) { s.append(p, n); }
};

struct PtrSink {
  char* p;
  void Put(const char* d, size_t n) {
    // Escaped identifiers are mostly short runs between quotes: avoid a libc call for those.
    if (n <= 8) {
      for (size_t i = 0; i < n; ++i) p[i] = d[i];
    } else {
      std::memcpy(p, d, n);
    }
    p += n;
  }
};

// The escaped body (no quotes). Runs of plain bytes are copied in one Put.
template <typename Sink>
void EscapeBody(std::string_view s, Sink& sink) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  size_t start = 0;
  while (i < n) {
    const uint8_t cls = kClass[p[i]];
    if (cls == 0) {
      ++i;
      continue;
    }
    if (cls == kUtf8) {
      uint32_t cp = 0;
      const size_t len = internal::DecodeUtf8(p + i, n - i, &cp);
      if (len != 0 && cp != 0x2028 && cp != 0x2029) {
        i += len;
        continue;
      }
      sink.Put(s.data() + start, i - start);
      if (len == 0) {
        sink.Put("\\ufffd", 6);
        i += 1;  // Go replaces byte by byte
      } else {
        sink.Put(cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
        i += len;
      }
      start = i;
      continue;
    }
    sink.Put(s.data() + start, i - start);
    char buf[6];
    sink.Put(buf, AsciiEscape(p[i], buf));
    ++i;
    start = i;
  }
  sink.Put(s.data() + start, n - start);
}

size_t EscapedBodySize(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t size = 0;
  size_t i = 0;
  while (i < n) {
    const uint8_t cls = kClass[p[i]];
    if (cls == 0) {
      ++size;
      ++i;
    } else if (cls == kUtf8) {
      uint32_t cp = 0;
      const size_t len = internal::DecodeUtf8(p + i, n - i, &cp);
      if (len == 0) {
        size += 6;
        i += 1;
      } else {
        size += (cp == 0x2028 || cp == 0x2029) ? 6 : len;
        i += len;
      }
    } else {
      size += cls;
      ++i;
    }
  }
  return size;
}

template <typename Sink>
void PutJsonString(std::string_view s, Sink& sink) {
  sink.Put("\"", 1);
  EscapeBody(s, sink);
  sink.Put("\"", 1);
}

// {"type":"<type>"[,"<key>":"<value>"]} where the second member is omitted when value is empty.
std::string TypedFrame(std::string_view type, std::string_view key, std::string_view value) {
  std::string out;
  out.reserve(16 + type.size() + key.size() + value.size() + 8);
  out.append("{\"type\":\"").append(type).append("\"");
  if (!value.empty()) {
    out.append(",\"").append(key).append("\":");
    AppendJsonString(out, value);
  }
  out.push_back('}');
  return out;
}

constexpr std::string_view kBroadcastIdPrefix = "{\"identifier\":";
constexpr std::string_view kBroadcastMsgKeyAfterId = ",\"message\":";
constexpr std::string_view kBroadcastMsgKeyAlone = "{\"message\":";

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  StringSink sink{out};
  PutJsonString(s, sink);
}

size_t JsonStringSize(std::string_view s) { return EscapedBodySize(s) + 2; }

std::string EncodeWelcome(std::string_view sid) { return TypedFrame("welcome", "sid", sid); }

std::string EncodePing(int64_t timestamp) {
  std::string out = "{\"type\":\"ping\",\"message\":";
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), timestamp);
  out.append(buf, res.ptr);
  out.push_back('}');
  return out;
}

std::string EncodePong() { return "{\"type\":\"pong\"}"; }

std::string EncodeDisconnect(std::string_view reason, bool reconnect) {
  std::string out = "{\"type\":\"disconnect\",\"reason\":";
  AppendJsonString(out, reason);
  out.append(reconnect ? ",\"reconnect\":true}" : ",\"reconnect\":false}");
  return out;
}

std::string EncodeConfirm(std::string_view identifier) {
  return TypedFrame("confirm_subscription", "identifier", identifier);
}

std::string EncodeReject(std::string_view identifier) {
  return TypedFrame("reject_subscription", "identifier", identifier);
}

std::string EncodeConfirmHistory(std::string_view identifier) {
  return TypedFrame("confirm_history", "identifier", identifier);
}

std::string EncodeRejectHistory(std::string_view identifier) {
  return TypedFrame("reject_history", "identifier", identifier);
}

std::string EncodePresence(std::string_view identifier, std::string_view message_json) {
  std::string out = "{\"type\":\"presence\"";
  if (!identifier.empty()) {
    out += ",\"identifier\":";
    AppendJsonString(out, identifier);
  }
  out += ",\"message\":";
  out += message_json;
  out += '}';
  return out;
}

namespace {
void AppendPresenceRecord(std::string& out, std::string_view id, std::string_view info_json) {
  if (!info_json.empty()) {
    out += "\"info\":";
    out += info_json;
    out += ',';
  }
  out += "\"id\":";
  AppendJsonString(out, id);
}
}  // namespace

std::string EncodePresenceEvent(std::string_view type, std::string_view id,
                                std::string_view info_json) {
  std::string out = "{\"type\":";
  AppendJsonString(out, type);
  out += ',';
  AppendPresenceRecord(out, id, info_json);
  out += '}';
  return out;
}

std::string EncodePresenceInfo(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string out = "{\"type\":\"info\",\"total\":" + std::to_string(records.size());
  if (!records.empty()) {
    out += ",\"records\":[";
    bool first = true;
    for (const auto& [id, info] : records) {
      if (!first) out += ',';
      first = false;
      out += '{';
      AppendPresenceRecord(out, id, info);
      out += '}';
    }
    out += ']';
  }
  out += '}';
  return out;
}

std::string EncodePresenceError() { return "{\"type\":\"error\",\"total\":0}"; }

std::string EncodeRestoredWelcome(std::string_view sid,
                                  const std::vector<std::string>& restored_ids) {
  std::string out = EncodeWelcome(sid);
  out.pop_back();
  out += ",\"restored\":true";
  if (!restored_ids.empty()) {
    out += ",\"restored_ids\":[";
    for (size_t i = 0; i < restored_ids.size(); ++i) {
      if (i) out += ',';
      AppendJsonString(out, restored_ids[i]);
    }
    out += ']';
  }
  out += '}';
  return out;
}

std::string EncodeBroadcastExt(std::string_view identifier, std::string_view message_json,
                               std::string_view stream, std::string_view epoch, uint64_t offset) {
  std::string out = EncodeBroadcast(identifier, message_json);
  out.pop_back();
  // Go's Reply: stream_id, epoch and offset are omitempty, in this order after message.
  if (!stream.empty()) {
    out += ",\"stream_id\":";
    AppendJsonString(out, stream);
  }
  if (!epoch.empty()) {
    out += ",\"epoch\":";
    AppendJsonString(out, epoch);
  }
  if (offset != 0) {
    out += ",\"offset\":";
    out += std::to_string(offset);
  }
  out += '}';
  return out;
}

size_t BroadcastSize(std::string_view identifier, std::string_view message_json) {
  if (identifier.empty()) return kBroadcastMsgKeyAlone.size() + message_json.size() + 1;
  return kBroadcastIdPrefix.size() + JsonStringSize(identifier) + kBroadcastMsgKeyAfterId.size() +
         message_json.size() + 1;
}

void WriteBroadcast(char* out, std::string_view identifier, std::string_view message_json) {
  PtrSink sink{out};
  if (identifier.empty()) {
    sink.Put(kBroadcastMsgKeyAlone.data(), kBroadcastMsgKeyAlone.size());
  } else {
    sink.Put(kBroadcastIdPrefix.data(), kBroadcastIdPrefix.size());
    PutJsonString(identifier, sink);
    sink.Put(kBroadcastMsgKeyAfterId.data(), kBroadcastMsgKeyAfterId.size());
  }
  sink.Put(message_json.data(), message_json.size());
  sink.Put("}", 1);
}

std::string EncodeBroadcast(std::string_view identifier, std::string_view message_json) {
  std::string out(BroadcastSize(identifier, message_json), '\0');
  WriteBroadcast(out.data(), identifier, message_json);
  return out;
}

struct MessageEncoder::Impl {
  Impl() {
    // Sets Go's depth limit; parse() re-allocates (and reports MEMALLOC) if this fails.
    [[maybe_unused]] auto err = dom.allocate(4096, internal::kMaxJsonDepth);
  }
  simdjson::dom::parser dom;
  internal::PaddedBuffer scratch;
  std::string repaired;
};

MessageEncoder::MessageEncoder() : impl_(std::make_unique<Impl>()) {}
MessageEncoder::~MessageEncoder() = default;

std::string MessageEncoder::MessageJson(std::string_view data) {
  const std::string_view trimmed = internal::TrimJsonWhitespace(data);
  if (!trimmed.empty()) {
    simdjson::dom::element root;
    std::string_view parsed;
    if (!internal::ParseDom(impl_->dom, impl_->scratch, impl_->repaired, trimmed, &root, &parsed) &&
        !root.is_null()) {
      return std::string(parsed);
    }
  }
  std::string out;
  out.reserve(data.size() + 2);
  AppendJsonString(out, data);
  return out;
}

}  // namespace cable::protocol
