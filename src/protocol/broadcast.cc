#include "protocol/broadcast.h"

#include <simdjson.h>

#include "protocol/json_util.h"

namespace cable::protocol {

namespace {

using internal::KeyMatches;
using simdjson::dom::element;
using simdjson::dom::object;

// Go string field: null keeps the previous value, any other non-string fails the whole unmarshal.
bool ReadString(element value, std::string& out) {
  if (value.is_null()) return true;
  std::string_view s;
  if (value.get_string().get(s)) return false;
  out.assign(s);
  return true;
}

bool ReadBool(element value, bool& out) {
  if (value.is_null()) return true;
  return !value.get_bool().get(out);
}

bool ParseMeta(element value, Publication& pub) {
  if (value.is_null()) return true;  // *StreamMessageMetadata stays nil
  object meta;
  if (value.get_object().get(meta)) return false;
  for (simdjson::dom::key_value_pair kv : meta) {
    if (KeyMatches(kv.key, "exclude_socket")) {
      if (!ReadString(kv.value, pub.exclude_socket)) return false;
    } else if (KeyMatches(kv.key, "transient")) {
      if (!ReadBool(kv.value, pub.transient)) return false;
    } else if (KeyMatches(kv.key, "broadcast_type")) {
      if (!ReadString(kv.value, pub.broadcast_type)) return false;
    }
  }
  return true;
}

// Decodes a StreamMessage object. false = a member had the wrong type.
bool ParsePublication(object obj, Publication& pub) {
  for (simdjson::dom::key_value_pair kv : obj) {
    if (KeyMatches(kv.key, "stream")) {
      if (!ReadString(kv.value, pub.stream)) return false;
    } else if (KeyMatches(kv.key, "data")) {
      if (!ReadString(kv.value, pub.data)) return false;
    } else if (KeyMatches(kv.key, "meta")) {
      if (!ParseMeta(kv.value, pub)) return false;
    } else if (KeyMatches(kv.key, "offset")) {
      uint64_t offset = 0;
      if (!kv.value.is_null() && !kv.value.get_uint64().get(offset)) pub.offset = offset;
    } else if (KeyMatches(kv.key, "epoch")) {
      if (!ReadString(kv.value, pub.epoch)) return false;
    }
  }
  return true;
}

cable::Result<std::vector<BroadcastItem>, BroadcastError> ParseBatch(simdjson::dom::array arr) {
  std::vector<BroadcastItem> items;
  items.reserve(arr.size());
  for (element el : arr) {
    object obj;
    if (el.get_object().get(obj)) return cable::MakeError(BroadcastError::kBadField);
    Publication pub;
    if (!ParsePublication(obj, pub)) return cable::MakeError(BroadcastError::kBadField);
    if (pub.stream.empty()) continue;
    items.emplace_back(std::move(pub));
  }
  return items;
}

cable::Result<std::vector<BroadcastItem>, BroadcastError> ParseCommand(object obj,
                                                                       bool publication_bad) {
  std::string command;
  element payload;
  bool has_payload = false;
  for (simdjson::dom::key_value_pair kv : obj) {
    if (KeyMatches(kv.key, "command")) {
      if (!ReadString(kv.value, command)) return cable::MakeError(BroadcastError::kBadField);
    } else if (KeyMatches(kv.key, "payload")) {
      payload = kv.value;
      has_payload = true;
    }
  }
  if (command.empty()) {
    return cable::MakeError(publication_bad ? BroadcastError::kBadField
                                            : BroadcastError::kUnknownShape);
  }
  if (command != "disconnect") return cable::MakeError(BroadcastError::kUnknownCommand);

  // Go unmarshals the raw payload into RemoteDisconnectMessage; a missing payload is an error.
  object p;
  if (!has_payload || payload.get_object().get(p)) {
    return cable::MakeError(BroadcastError::kBadField);
  }
  RemoteDisconnect rd;
  for (simdjson::dom::key_value_pair kv : p) {
    if (KeyMatches(kv.key, "identifier")) {
      if (!ReadString(kv.value, rd.identifier)) return cable::MakeError(BroadcastError::kBadField);
    } else if (KeyMatches(kv.key, "reconnect")) {
      if (!ReadBool(kv.value, rd.reconnect)) return cable::MakeError(BroadcastError::kBadField);
    }
  }
  std::vector<BroadcastItem> items;
  items.emplace_back(std::move(rd));
  return items;
}

}  // namespace

const char* BroadcastErrorName(BroadcastError e) {
  switch (e) {
    case BroadcastError::kMalformedJson:
      return "malformed_json";
    case BroadcastError::kUnknownShape:
      return "unknown_shape";
    case BroadcastError::kBadField:
      return "bad_field";
    case BroadcastError::kUnknownCommand:
      return "unknown_command";
  }
  return "unknown";
}

struct BroadcastParser::Impl {
  Impl() {
    // Sets Go's depth limit; parse() re-allocates (and reports MEMALLOC) if this fails.
    [[maybe_unused]] auto err = dom.allocate(4096, internal::kMaxJsonDepth);
  }
  simdjson::dom::parser dom;
  internal::PaddedBuffer scratch;
  std::string repaired;
};

BroadcastParser::BroadcastParser() : impl_(std::make_unique<Impl>()) {}
BroadcastParser::~BroadcastParser() = default;

cable::Result<std::vector<BroadcastItem>, BroadcastError> BroadcastParser::Parse(
    std::string_view body) {
  element root;
  std::string_view text;
  if (internal::ParseDom(impl_->dom, impl_->scratch, impl_->repaired, body, &root, &text)) {
    return cable::MakeError(BroadcastError::kMalformedJson);
  }

  simdjson::dom::array arr;
  if (!root.get_array().get(arr)) {
    // Batch only when the first element is itself a publication with a stream.
    auto first = arr.at(0);
    object first_obj;
    Publication probe;
    if (first.error() || first.get_object().get(first_obj)) {
      return cable::MakeError(BroadcastError::kUnknownShape);
    }
    if (!ParsePublication(first_obj, probe)) return cable::MakeError(BroadcastError::kBadField);
    if (probe.stream.empty()) return cable::MakeError(BroadcastError::kUnknownShape);
    return ParseBatch(arr);
  }

  object obj;
  if (root.get_object().get(obj)) return cable::MakeError(BroadcastError::kUnknownShape);
  Publication pub;
  const bool publication_ok = ParsePublication(obj, pub);
  if (publication_ok && !pub.stream.empty()) {
    std::vector<BroadcastItem> items;
    items.emplace_back(std::move(pub));
    return items;
  }
  // Like Go, a failed publication decode falls through to command detection.
  return ParseCommand(obj, !publication_ok);
}

}  // namespace cable::protocol
