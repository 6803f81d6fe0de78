#include "rpc/http_codec.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver_util.h>

namespace cable::rpc::http {
namespace {

bool StartsWithNoCase(std::string_view s, std::string_view lower_prefix) {
  if (s.size() < lower_prefix.size()) return false;
  for (size_t i = 0; i < lower_prefix.size(); ++i) {
    char ch = s[i];
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (ch != lower_prefix[i]) return false;
  }
  return true;
}

const google::protobuf::Message& RequestOf(const Call& call) {
  switch (call.kind) {
    case CallKind::kConnect:
      return call.connect_request;
    case CallKind::kCommand:
      return call.command_request;
    case CallKind::kDisconnect:
      break;
  }
  return call.disconnect_request;
}

google::protobuf::Message& ResponseOf(Call& call) {
  switch (call.kind) {
    case CallKind::kConnect:
      return call.connect_response;
    case CallKind::kCommand:
      return call.command_response;
    case CallKind::kDisconnect:
      break;
  }
  return call.disconnect_response;
}

}  // namespace

bool IsHttpHost(std::string_view host) {
  return StartsWithNoCase(host, "http://") || StartsWithNoCase(host, "https://");
}

std::string MethodUrl(std::string_view base, CallKind kind) {
  if (!base.empty() && base.back() == '/') base.remove_suffix(1);
  std::string url(base);
  switch (kind) {
    case CallKind::kConnect:
      return url + "/connect";
    case CallKind::kCommand:
      return url + "/command";
    case CallKind::kDisconnect:
      break;
  }
  return url + "/disconnect";
}

std::string EncodeRequest(const Call& call) {
  // MessageToJsonString would print maps (headers, cstate, istate) in hash order; serialized
  // deterministically first, they come out sorted by key, as Go's encoding/json writes them.
  static google::protobuf::util::TypeResolver* const resolver =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          "type.googleapis.com", google::protobuf::DescriptorPool::generated_pool());
  const google::protobuf::Message& request = RequestOf(call);
  std::string binary;
  {
    google::protobuf::io::StringOutputStream stream(&binary);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_enums_as_ints = true;
  std::string out;
  // Our own well-formed messages always print; an empty body would be answered 400 by the app.
  (void)google::protobuf::util::BinaryToJsonString(
      resolver, "type.googleapis.com/" + request.GetDescriptor()->full_name(), binary, &out,
      options);
  return out;
}

grpc::Status DecodeResponse(Call& call, std::string_view body) {
  google::protobuf::Message& response = ResponseOf(call);
  response.Clear();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), &response, options);
  if (status.ok()) return grpc::Status::OK;
  response.Clear();
  return grpc::Status(
      grpc::StatusCode::UNKNOWN,
      "invalid response body (" + std::string(status.message()) + "): " + CompactForLog(body));
}

grpc::Status StatusForHttpCode(long http_code, std::string_view body) {
  const std::string text = "http " + std::to_string(http_code) + ": " + CompactForLog(body);
  if (http_code == 401) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, text);
  if (http_code == 400 || http_code == 422) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, text);
  }
  return grpc::Status(grpc::StatusCode::UNKNOWN, text);
}

std::string CompactForLog(std::string_view body, size_t max) {
  std::string out;
  out.reserve(std::min(body.size(), max));
  bool space = false;
  for (char ch : body) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    const bool blank = ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
    if (blank) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    // Control bytes would break the log line; show them as '?'.
    out += (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ? '?' : ch;
  }
  return out;
}

}  // namespace cable::rpc::http
