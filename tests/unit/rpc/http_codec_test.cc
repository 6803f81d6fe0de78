// rpc/http_codec: the JSON bodies, URLs and status mapping of RPC over HTTP (anycable-go
// rpc/http.go; AnyCable etc/rpc-openapi.yml).
#include "rpc/http_codec.h"

#include <gtest/gtest.h>

namespace cable::rpc::http {
namespace {

TEST(HttpCodecTest, HttpHostsAreRecognisedByScheme) {
  EXPECT_TRUE(IsHttpHost("http://app:3000/_anycable"));
  EXPECT_TRUE(IsHttpHost("HTTPS://app/_anycable"));
  EXPECT_FALSE(IsHttpHost("localhost:50051"));
  EXPECT_FALSE(IsHttpHost("dns:///app:50051"));
  EXPECT_FALSE(IsHttpHost("grpc://app:50051"));
  EXPECT_FALSE(IsHttpHost("http:/app"));
}

TEST(HttpCodecTest, MethodUrlsAppendThePathOnce) {
  EXPECT_EQ(MethodUrl("http://a:1/_anycable", CallKind::kConnect), "http://a:1/_anycable/connect");
  EXPECT_EQ(MethodUrl("http://a:1/_anycable/", CallKind::kCommand), "http://a:1/_anycable/command");
  EXPECT_EQ(MethodUrl("https://a", CallKind::kDisconnect), "https://a/disconnect");
}

TEST(HttpCodecTest, CommandRequestUsesProtoFieldNames) {
  Call call;
  call.kind = CallKind::kCommand;
  auto& m = call.command_request;
  m.set_command("message");
  m.set_identifier(R"({"channel":"Chat"})");
  m.set_connection_identifiers(R"({"user":"a"})");
  m.set_data(R"({"action":"say"})");
  m.mutable_env()->set_url("http://example.com/cable");
  (*m.mutable_env()->mutable_headers())["cookie"] = "a=b";
  (*m.mutable_env()->mutable_istate())["room"] = "1";
  EXPECT_EQ(EncodeRequest(call),
            R"({"command":"message","identifier":"{\"channel\":\"Chat\"}",)"
            R"("connection_identifiers":"{\"user\":\"a\"}","data":"{\"action\":\"say\"}",)"
            R"("env":{"url":"http://example.com/cable","headers":{"cookie":"a=b"},)"
            R"("istate":{"room":"1"}}})");
}

TEST(HttpCodecTest, MapsAreWrittenInKeyOrder) {
  Call call;
  call.kind = CallKind::kConnect;
  auto* headers = call.connect_request.mutable_env()->mutable_headers();
  for (const char* k : {"x-b", "cookie", "REMOTE_ADDR", "x-a", "accept", "zz", "b", "a"}) {
    (*headers)[k] = "1";
  }
  EXPECT_EQ(EncodeRequest(call),
            R"({"env":{"headers":{"REMOTE_ADDR":"1","a":"1","accept":"1","b":"1",)"
            R"("cookie":"1","x-a":"1","x-b":"1","zz":"1"}}})");
}

TEST(HttpCodecTest, ConnectAndDisconnectRequests) {
  Call connect;
  connect.kind = CallKind::kConnect;
  connect.connect_request.mutable_env()->set_url("http://x/cable");
  (*connect.connect_request.mutable_env()->mutable_cstate())["k"] = "v";
  EXPECT_EQ(EncodeRequest(connect), R"({"env":{"url":"http://x/cable","cstate":{"k":"v"}}})");

  Call disconnect;
  disconnect.kind = CallKind::kDisconnect;
  disconnect.disconnect_request.set_identifiers("ids");
  disconnect.disconnect_request.add_subscriptions("s1");
  disconnect.disconnect_request.mutable_env()->set_url("http://x/cable");
  EXPECT_EQ(EncodeRequest(disconnect),
            R"({"identifiers":"ids","subscriptions":["s1"],"env":{"url":"http://x/cable"}})");
}

TEST(HttpCodecTest, DecodesIntegerEnumsAndEveryCommandField) {
  Call call;
  call.kind = CallKind::kCommand;
  ASSERT_TRUE(DecodeResponse(call, R"({"status":2,"disconnect":true,"stop_streams":true,
      "streams":["a"],"stopped_streams":["b"],"transmissions":["t"],"error_msg":"no",
      "env":{"cstate":{"c":"1"},"istate":{"i":"2"}},
      "presence":{"type":"join","id":"42","info":"{}"},"extra":{"ignored":[1]}})")
                  .ok());
  const auto& r = call.command_response;
  EXPECT_EQ(r.status(), anycable::FAILURE);
  EXPECT_TRUE(r.disconnect());
  EXPECT_TRUE(r.stop_streams());
  ASSERT_EQ(r.streams_size(), 1);
  EXPECT_EQ(r.streams(0), "a");
  EXPECT_EQ(r.stopped_streams(0), "b");
  EXPECT_EQ(r.transmissions(0), "t");
  EXPECT_EQ(r.error_msg(), "no");
  EXPECT_EQ(r.env().cstate().at("c"), "1");
  EXPECT_EQ(r.env().istate().at("i"), "2");
  EXPECT_EQ(r.presence().id(), "42");
}

TEST(HttpCodecTest, OutOfRangeStatusIsKeptForTheWorkerToRefuse) {
  // proto3 enums are open: the value survives decoding, as it would over gRPC, and the worker
  // treats anything but SUCCESS / FAILURE as an error (one code path for both transports).
  Call call;
  call.kind = CallKind::kConnect;
  ASSERT_TRUE(DecodeResponse(call, R"({"status":7,"identifiers":"x"})").ok());
  EXPECT_EQ(static_cast<int>(call.connect_response.status()), 7);
}

TEST(HttpCodecTest, BodiesThatAreNotAResponseObjectAreUnknownErrors) {
  for (const char* body :
       {"", "<html><body>Oops</body></html>", R"({"status":1,"transmissions":["a")", "[1,2]",
        R"({"status":1.5})", R"({"status":1} trailing)"}) {
    Call call;
    call.kind = CallKind::kConnect;
    call.connect_response.set_identifiers("stale");
    grpc::Status st = DecodeResponse(call, body);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN) << body;
    EXPECT_NE(st.error_message().find("invalid response body"), std::string::npos) << body;
    EXPECT_EQ(call.connect_response.identifiers(), "") << "a failed decode leaves no half answer";
  }
}

TEST(HttpCodecTest, HttpStatusesMapAsAnycableGo) {
  EXPECT_EQ(StatusForHttpCode(401, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(StatusForHttpCode(400, "bad").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(StatusForHttpCode(422, "bad").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(StatusForHttpCode(500, "boom").error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(StatusForHttpCode(503, "").error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(StatusForHttpCode(404, "").error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(StatusForHttpCode(500, "boom").error_message(), "http 500: boom");
}

TEST(HttpCodecTest, CompactForLogFoldsWhitespaceAndCuts) {
  EXPECT_EQ(CompactForLog("  a \n\t b  "), "a b");
  EXPECT_EQ(CompactForLog(std::string(300, 'x'), 10), std::string(10, 'x') + "...");
  EXPECT_EQ(CompactForLog(std::string("a\x01z", 3)), "a?z");
}

}  // namespace
}  // namespace cable::rpc::http
