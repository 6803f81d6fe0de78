#include "protocol/command.h"

#include <simdjson.h>

#include "protocol/json_util.h"

namespace cable::protocol {

namespace {

using internal::KeyMatches;

}  // namespace

const char* DecodeErrorName(DecodeError e) {
  switch (e) {
    case DecodeError::kMalformedJson:
      return "malformed_json";
    case DecodeError::kNotAnObject:
      return "not_an_object";
    case DecodeError::kMissingCommand:
      return "missing_command";
    case DecodeError::kBadField:
      return "bad_field";
    case DecodeError::kDataNotString:
      return "data_not_string";
  }
  return "unknown";
}

CommandType CommandTypeFromName(std::string_view name) {
  // Command names are matched exactly, as Go's switch on msg.Command does.
  if (name == "message") return CommandType::kMessage;
  if (name == "subscribe") return CommandType::kSubscribe;
  if (name == "unsubscribe") return CommandType::kUnsubscribe;
  if (name == "ping") return CommandType::kPing;
  if (name == "pong") return CommandType::kPong;
  if (name == "whisper") return CommandType::kWhisper;
  if (name == "history") return CommandType::kHistory;
  if (name == "join") return CommandType::kJoin;
  if (name == "leave") return CommandType::kLeave;
  if (name == "presence") return CommandType::kPresence;
  return CommandType::kUnknown;
}

struct CommandDecoder::Impl {
  Impl() {
    // The depth limit sticks even if this allocation fails: parse() re-allocates on demand and
    // reports MEMALLOC as a parse error then.
    [[maybe_unused]] auto dom_err = dom.allocate(4096, internal::kMaxJsonDepth);
    [[maybe_unused]] auto od_err = ondemand.allocate(4096, internal::kMaxJsonDepth);
  }

  // Second, lazy pass over the already validated text to copy raw JSON members; DOM cannot give
  // back source text. Key matching and "last key wins" mirror the DOM pass.
  bool ExtractRaw(std::string_view text, ClientCommand& cmd, bool want_data, bool want_history,
                  bool want_presence) {
    simdjson::ondemand::document doc;
    if (ondemand.iterate(text.data(), text.size(), text.size() + simdjson::SIMDJSON_PADDING)
            .get(doc)) {
      return false;
    }
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj)) return false;
    for (auto field_result : obj) {
      simdjson::ondemand::field field;
      if (std::move(field_result).get(field)) return false;
      std::string_view key;
      if (field.unescaped_key().get(key)) return false;
      std::string* target = nullptr;
      if (want_data && KeyMatches(key, "data")) {
        target = &cmd.data;
      } else if (want_history && KeyMatches(key, "history")) {
        target = &cmd.history;
      } else if (want_presence && KeyMatches(key, "presence")) {
        target = &cmd.presence;
      }
      if (target == nullptr) continue;  // the iterator skips unread values
      std::string_view raw;
      if (internal::RawJson(field.value(), &raw)) return false;
      if (raw == "null") {
        // Go: null resets an interface{} (data) but leaves a struct (history/presence) untouched.
        if (target == &cmd.data) target->clear();
        continue;
      }
      target->assign(raw);
    }
    return true;
  }

  simdjson::dom::parser dom;
  simdjson::ondemand::parser ondemand;
  internal::PaddedBuffer scratch;
  std::string repaired;
};

CommandDecoder::CommandDecoder() : impl_(std::make_unique<Impl>()) {}
CommandDecoder::~CommandDecoder() = default;

cable::Result<ClientCommand, DecodeError> CommandDecoder::Decode(std::string_view frame) {
  simdjson::dom::element root;
  std::string_view text;
  if (internal::ParseDom(impl_->dom, impl_->scratch, impl_->repaired, frame, &root, &text)) {
    return cable::MakeError(DecodeError::kMalformedJson);
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) return cable::MakeError(DecodeError::kNotAnObject);

  ClientCommand cmd;
  bool has_command = false;
  simdjson::dom::element data;
  bool has_data = false;
  bool has_history = false;
  bool has_presence = false;
  for (simdjson::dom::key_value_pair kv : obj) {
    if (KeyMatches(kv.key, "command") || KeyMatches(kv.key, "identifier")) {
      const bool is_command = KeyMatches(kv.key, "command");
      if (kv.value.is_null()) continue;  // Go: null leaves a string field as it was
      std::string_view s;
      if (kv.value.get_string().get(s)) return cable::MakeError(DecodeError::kBadField);
      if (is_command) {
        cmd.name.assign(s);
        has_command = true;
      } else {
        cmd.identifier.assign(s);
      }
    } else if (KeyMatches(kv.key, "data")) {
      has_data = !kv.value.is_null();
      data = kv.value;
    } else if (KeyMatches(kv.key, "history")) {
      has_history = has_history || !kv.value.is_null();
    } else if (KeyMatches(kv.key, "presence")) {
      has_presence = has_presence || !kv.value.is_null();
    }
  }
  if (!has_command) return cable::MakeError(DecodeError::kMissingCommand);
  cmd.type = CommandTypeFromName(cmd.name);

  if (cmd.type == CommandType::kMessage) {
    std::string_view s;
    if (!has_data || data.get_string().get(s)) return cable::MakeError(DecodeError::kDataNotString);
    cmd.data.assign(s);
    cmd.has_data = true;
    return cmd;
  }
  if (has_data || has_history || has_presence) {
    if (!impl_->ExtractRaw(text, cmd, has_data, has_history, has_presence)) {
      return cable::MakeError(DecodeError::kMalformedJson);  // unreachable for DOM-valid text
    }
    cmd.has_data = has_data;
  }
  return cmd;
}

namespace {
bool ReadPosition(simdjson::dom::element el, HistoryPosition* pos) {
  if (el.is_null()) return true;
  simdjson::dom::object obj;
  if (el.get_object().get(obj)) return false;
  for (simdjson::dom::key_value_pair kv : obj) {
    if (kv.value.is_null()) continue;
    if (KeyMatches(kv.key, "epoch")) {
      std::string_view s;
      if (kv.value.get_string().get(s)) return false;
      pos->epoch.assign(s);
    } else if (KeyMatches(kv.key, "offset")) {
      uint64_t v = 0;
      if (kv.value.get_uint64().get(v)) return false;
      pos->offset = v;
    }
  }
  return true;
}
}  // namespace

bool ParseHistoryRequest(std::string_view raw, HistoryRequest* out) {
  thread_local simdjson::dom::parser parser;
  thread_local internal::PaddedBuffer scratch;
  thread_local std::string repaired;
  *out = HistoryRequest();
  simdjson::dom::element root;
  std::string_view text;
  if (internal::ParseDom(parser, scratch, repaired, raw, &root, &text)) return false;
  if (root.is_null()) return true;
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) return false;
  for (simdjson::dom::key_value_pair kv : obj) {
    if (kv.value.is_null()) continue;
    if (KeyMatches(kv.key, "since")) {
      int64_t v = 0;
      if (kv.value.get_int64().get(v)) return false;
      out->since = v;
    } else if (KeyMatches(kv.key, "streams")) {
      simdjson::dom::object streams;
      if (kv.value.get_object().get(streams)) return false;
      out->has_streams = true;
      for (simdjson::dom::key_value_pair s : streams) {
        HistoryPosition pos;
        if (!ReadPosition(s.value, &pos)) return false;
        bool replaced = false;
        for (auto& [name, old] : out->streams) {
          if (name == s.key) {
            old = pos;  // Go: a repeated key overwrites
            replaced = true;
          }
        }
        if (!replaced) out->streams.emplace_back(std::string(s.key), std::move(pos));
      }
    }
  }
  return true;
}

bool ParsePresenceRequest(std::string_view raw, std::string* id, std::string* info_json) {
  thread_local simdjson::dom::parser parser;
  thread_local internal::PaddedBuffer scratch;
  thread_local std::string repaired;
  id->clear();
  info_json->clear();
  simdjson::dom::element root;
  std::string_view text;
  if (internal::ParseDom(parser, scratch, repaired, raw, &root, &text)) return false;
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) return false;
  for (simdjson::dom::key_value_pair kv : obj) {
    if (kv.value.is_null()) continue;
    if (KeyMatches(kv.key, "id")) {
      std::string_view v;
      if (kv.value.get_string().get(v)) return false;
      id->assign(v);
    } else if (KeyMatches(kv.key, "info")) {
      *info_json = simdjson::minify(kv.value);
    }
  }
  return true;
}

}  // namespace cable::protocol
