// Parser for publications sent by the application (HTTP /_broadcast body, later Redis/NATS
// payloads): a single publication, a batch, or a remote command. A BroadcastParser belongs to one
// thread (it owns a simdjson parser and scratch memory); results own their strings.
//
// Mirrors anycable-go's common.PubSubMessageFromJSON: keys match case-insensitively, a repeated
// key overwrites the earlier one, null leaves a field unset, unknown keys are ignored.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace cable::protocol {

struct Publication {
  std::string stream;
  std::string data;            // raw app string; turn into JSON with MessageEncoder
  std::string exclude_socket;  // meta.exclude_socket: sid of the session to skip
  bool transient = false;      // meta.transient: do not store in history
  std::string broadcast_type;  // meta.broadcast_type
  // A broker's stamp (`--broker redis`): set by the node that stored it, carried by pub/sub as
  // anycable-go's StreamMessage "offset"/"epoch"; 0/empty = none. Ignored on HTTP ingress.
  uint64_t offset = 0;
  std::string epoch;
};

// {"command":"disconnect","payload":{"identifier":"...","reconnect":true}}
struct RemoteDisconnect {
  std::string identifier;  // connection identifiers string, compared byte-exactly
  bool reconnect = false;
};

using BroadcastItem = std::variant<Publication, RemoteDisconnect>;

enum class BroadcastError : uint8_t {
  kMalformedJson,   // not valid JSON
  kUnknownShape,    // neither a publication, a batch nor a command (incl. [] and {})
  kBadField,        // a recognised member has the wrong JSON type (e.g. "data" is an object),
                    // a batch element is not an object, or a disconnect payload is missing/invalid
  kUnknownCommand,  // a command other than "disconnect" (Go ignores these)
};

const char* BroadcastErrorName(BroadcastError e);

class BroadcastParser {
 public:
  BroadcastParser();
  ~BroadcastParser();
  BroadcastParser(const BroadcastParser&) = delete;
  BroadcastParser& operator=(const BroadcastParser&) = delete;

  // Detection order (spec §1 "Publication format"): object with non-empty "stream" -> one
  // publication; array whose first element is an object with non-empty "stream" -> batch (order
  // kept; later elements with an empty stream are skipped: they can reach no subscriber);
  // object with non-empty "command" -> command; anything else -> kUnknownShape.
  cable::Result<std::vector<BroadcastItem>, BroadcastError> Parse(std::string_view body);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cable::protocol
