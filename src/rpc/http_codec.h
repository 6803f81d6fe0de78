// The wire format of RPC over HTTP (anycable-go rpc/http.go, AnyCable docs/http_rpc.md): which URL
// each call kind is POSTed to, the JSON bodies (the same protobuf messages as gRPC, with proto
// field names and enums as integers) and how an HTTP answer maps to gRPC status semantics, so the
// dispatcher retries, counts and completes HTTP attempts exactly as gRPC ones.
//
// Pure functions, any thread; the HTTP transport calls them on the RPC dispatcher thread.
#pragma once

#include <string>
#include <string_view>

#include <grpcpp/support/status.h>

#include "rpc/client.h"

namespace cable::rpc::http {

// True for an rpc_host that selects RPC over HTTP: an http:// or https:// URL (any case).
bool IsHttpHost(std::string_view host);

// <base>/connect, <base>/command or <base>/disconnect; one trailing '/' of base is dropped.
std::string MethodUrl(std::string_view base, CallKind kind);

// The JSON body of the call's request (the message of its kind).
std::string EncodeRequest(const Call& call);

// A 200 answer: the body parsed into the call's response of its kind (unknown fields ignored).
// OK, or UNKNOWN when the body is not such a JSON object (the response is then left empty).
grpc::Status DecodeResponse(Call& call, std::string_view body);

// Any other HTTP status, as anycable-go maps it: 401 → UNAUTHENTICATED, 400 and 422 →
// INVALID_ARGUMENT, anything else → UNKNOWN. None of them is retried.
grpc::Status StatusForHttpCode(long http_code, std::string_view body);

// A body fit for one log line: whitespace runs folded to one space, cut at `max` bytes.
std::string CompactForLog(std::string_view body, size_t max = 200);

}  // namespace cable::rpc::http
