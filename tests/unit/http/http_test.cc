#include "http/http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cable::http {
namespace {

using ::testing::ElementsAre;

constexpr size_t kMax = 8192;

const std::string kUpgradeHead =
    "GET /cable?token=abc&pi=5 HTTP/1.1\r\n"
    "Host: example.com:8080\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: actioncable-v1-ext-json, actioncable-v1-json\r\n"
    "Sec-WebSocket-Protocol: anycable-token.xyz\r\n"
    "Origin: https://Example.com\r\n"
    "Cookie: a=1; b=2\r\n"
    "\r\n";

Request MustParse(std::string_view buf) {
  Request req;
  ParseError err = ParseError::kNone;
  EXPECT_EQ(ParseRequestHead(buf, kMax, &req, &err), ParseStatus::kComplete);
  EXPECT_EQ(err, ParseError::kNone);
  return req;
}

TEST(ParseRequestHead, CompleteUpgradeRequest) {
  Request req = MustParse(kUpgradeHead);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/cable?token=abc&pi=5");
  EXPECT_EQ(req.path, "/cable");
  EXPECT_EQ(req.query, "token=abc&pi=5");
  EXPECT_EQ(req.minor_version, 1);
  EXPECT_EQ(req.head_size, kUpgradeHead.size());
  EXPECT_EQ(req.headers.size(), 9u);
  EXPECT_FALSE(req.content_length.has_value());
  EXPECT_FALSE(req.chunked);
  EXPECT_EQ(req.Get("host"), "example.com:8080");
  EXPECT_EQ(req.Get("SEC-WEBSOCKET-KEY"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(req.Get("X-Missing"), std::nullopt);
  EXPECT_THAT(req.GetAll("sec-websocket-protocol"),
              ElementsAre("actioncable-v1-ext-json, actioncable-v1-json", "anycable-token.xyz"));
}

TEST(ParseRequestHead, TrimsValuesAndKeepsTrailingBytesOutOfHead) {
  std::string buf = "POST /_broadcast HTTP/1.0\r\nContent-Length:  5 \r\nX-Empty:\r\n\r\nhello";
  Request req = MustParse(buf);
  EXPECT_EQ(req.minor_version, 0);
  EXPECT_EQ(req.content_length, 5u);
  EXPECT_EQ(req.Get("X-Empty"), "");
  EXPECT_EQ(req.head_size, buf.size() - 5);
  EXPECT_EQ(req.query, "");
}

TEST(ParseRequestHead, NoHeadersAndLeadingEmptyLines) {
  std::string buf = "\r\n\r\nGET /health HTTP/1.1\r\n\r\n";
  Request req = MustParse(buf);
  EXPECT_EQ(req.path, "/health");
  EXPECT_TRUE(req.headers.empty());
  EXPECT_EQ(req.head_size, buf.size());
}

TEST(ParseRequestHead, AbsoluteFormTarget) {
  Request req = MustParse("GET http://h.example/cable?x=1 HTTP/1.1\r\nHost: h.example\r\n\r\n");
  EXPECT_EQ(req.path, "/cable");
  EXPECT_EQ(req.query, "x=1");
  EXPECT_EQ(RequestUrl(req, false), "http://h.example/cable?x=1");
  Request bare = MustParse("GET http://h.example HTTP/1.1\r\n\r\n");
  EXPECT_EQ(bare.path, "/");
}

TEST(ParseRequestHead, SplitAtEveryBytePosition) {
  for (size_t cut = 0; cut < kUpgradeHead.size(); ++cut) {
    Request req;
    ParseError err = ParseError::kNone;
    ASSERT_EQ(ParseRequestHead(std::string_view(kUpgradeHead).substr(0, cut), kMax, &req, &err),
              ParseStatus::kIncomplete)
        << "cut=" << cut;
    EXPECT_EQ(err, ParseError::kNone);
  }
  Request req = MustParse(kUpgradeHead);
  EXPECT_EQ(req.head_size, kUpgradeHead.size());
}

TEST(ParseRequestHead, TooLarge) {
  Request req;
  ParseError err = ParseError::kNone;
  // Complete head over the limit.
  EXPECT_EQ(ParseRequestHead(kUpgradeHead, kUpgradeHead.size() - 1, &req, &err),
            ParseStatus::kError);
  EXPECT_EQ(err, ParseError::kHeadTooLarge);
  // Exactly at the limit is fine.
  EXPECT_EQ(ParseRequestHead(kUpgradeHead, kUpgradeHead.size(), &req, &err),
            ParseStatus::kComplete);
  // Incomplete head already over the limit: no point waiting for more.
  std::string partial = "GET / HTTP/1.1\r\nX-Long: " + std::string(200, 'a');
  EXPECT_EQ(ParseRequestHead(partial, 100, &req, &err), ParseStatus::kError);
  EXPECT_EQ(err, ParseError::kHeadTooLarge);
  // Incomplete and within the limit.
  err = ParseError::kNone;
  EXPECT_EQ(ParseRequestHead(partial, partial.size(), &req, &err), ParseStatus::kIncomplete);
  EXPECT_EQ(err, ParseError::kNone);
}

struct BadCase {
  const char* name;
  std::string head;
  ParseError want;
};

TEST(ParseRequestHead, RejectsBadHeads) {
  std::string many_headers = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many_headers += "X-H" + std::to_string(i) + ": v\r\n";
  many_headers += "\r\n";
  std::string hundred_headers = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i) hundred_headers += "X-H" + std::to_string(i) + ": v\r\n";
  hundred_headers += "\r\n";
  MustParse(hundred_headers);

  const std::vector<BadCase> cases = {
      {"no colon", "GET / HTTP/1.1\r\nHost example\r\n\r\n", ParseError::kMalformed},
      {"obs-fold", "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n", ParseError::kMalformed},
      {"tab fold", "GET / HTTP/1.1\r\nX-A: 1\r\n\tcontinued\r\n\r\n", ParseError::kMalformed},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", ParseError::kMalformed},
      {"empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", ParseError::kMalformed},
      {"ctl in value", "GET / HTTP/1.1\r\nX-A: a\x01z\r\n\r\n", ParseError::kMalformed},
      {"bare LF in value", "GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n", ParseError::kMalformed},
      {"DEL in value", "GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", ParseError::kMalformed},
      {"ctl in target", "GET /a\x01 HTTP/1.1\r\n\r\n", ParseError::kMalformed},
      {"method not token", "G(T / HTTP/1.1\r\n\r\n", ParseError::kMalformed},
      {"empty method", " / HTTP/1.1\r\n\r\n", ParseError::kMalformed},
      {"missing target", "GET HTTP/1.1\r\n\r\n", ParseError::kMalformed},
      {"extra space", "GET /a b HTTP/1.1\r\n\r\n", ParseError::kMalformed},
      {"not http", "GET / FTP/1.1\r\n\r\n", ParseError::kMalformed},
      {"lowercase http", "GET / http/1.1\r\n\r\n", ParseError::kMalformed},
      {"garbage", "\x16\x03\x01\x02\r\n\r\n", ParseError::kMalformed},
      {"http/2.0", "GET / HTTP/2.0\r\n\r\n", ParseError::kUnsupportedVersion},
      {"http/1.2", "GET / HTTP/1.2\r\n\r\n", ParseError::kUnsupportedVersion},
      {"http/0.9", "GET / HTTP/0.9\r\n\r\n", ParseError::kUnsupportedVersion},
      {"101 headers", many_headers, ParseError::kMalformed},
      {"dup content-length", "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
       ParseError::kBadContentLength},
      {"negative content-length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
       ParseError::kBadContentLength},
      {"list content-length", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
       ParseError::kBadContentLength},
      {"empty content-length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
       ParseError::kBadContentLength},
      {"hex content-length", "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
       ParseError::kBadContentLength},
      {"overflow content-length",
       "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
       ParseError::kBadContentLength},
      {"te + cl", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       ParseError::kBadContentLength},
      {"te not chunked last", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
       ParseError::kMalformed},
  };
  for (const BadCase& c : cases) {
    Request req;
    ParseError err = ParseError::kNone;
    EXPECT_EQ(ParseRequestHead(c.head, kMax, &req, &err), ParseStatus::kError) << c.name;
    EXPECT_EQ(err, c.want) << c.name;
  }
}

TEST(ParseRequestHead, TransferEncodingChunked) {
  Request req = MustParse("POST /_broadcast HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
  EXPECT_TRUE(req.chunked);
  EXPECT_FALSE(req.content_length.has_value());
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

TEST(DecodeChunkedBody, Complete) {
  std::string body = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nNEXT";
  std::string out;
  size_t consumed = 0;
  ASSERT_EQ(DecodeChunkedBody(body, 1024, &out, &consumed), ParseStatus::kComplete);
  EXPECT_EQ(out, "hello, world");
  EXPECT_EQ(consumed, body.size() - 4);
}

TEST(DecodeChunkedBody, UppercaseHexAndTrailers) {
  std::string body = "A\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n";
  std::string out;
  size_t consumed = 0;
  ASSERT_EQ(DecodeChunkedBody(body, 1024, &out, &consumed), ParseStatus::kComplete);
  EXPECT_EQ(out, "0123456789");
  EXPECT_EQ(consumed, body.size());
}

TEST(DecodeChunkedBody, EmptyBody) {
  std::string out = "stale";
  size_t consumed = 0;
  ASSERT_EQ(DecodeChunkedBody("0\r\n\r\n", 0, &out, &consumed), ParseStatus::kComplete);
  EXPECT_EQ(out, "");
  EXPECT_EQ(consumed, 5u);
}

TEST(DecodeChunkedBody, IncompleteAtEveryPrefix) {
  std::string body = "5\r\nhello\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n";
  for (size_t cut = 0; cut < body.size(); ++cut) {
    std::string out;
    size_t consumed = 0;
    EXPECT_EQ(DecodeChunkedBody(std::string_view(body).substr(0, cut), 1024, &out, &consumed),
              ParseStatus::kIncomplete)
        << "cut=" << cut;
  }
}

TEST(DecodeChunkedBody, Errors) {
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"no size", "\r\nhello\r\n0\r\n\r\n"},
      {"bad size", "zz\r\nhello\r\n0\r\n\r\n"},
      {"junk after size", "5 x\r\nhello\r\n0\r\n\r\n"},
      {"missing crlf after data", "5\r\nhelloXX0\r\n\r\n"},
      {"size overflow", "fffffffffffffffff\r\n"},
      {"bad trailer", "0\r\nno colon\r\n\r\n"},
      {"too large", "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"},
      {"huge chunk", "ffffffff\r\n"},
      {"endless size line", std::string(5000, '0')},
  };
  for (const auto& [name, body] : cases) {
    std::string out;
    size_t consumed = 0;
    EXPECT_EQ(DecodeChunkedBody(body, 10, &out, &consumed), ParseStatus::kError) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Upgrade

TEST(Upgrade, Rfc6455SampleKey) {
  EXPECT_EQ(ComputeAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(Upgrade, ValidRequest) {
  Request req = MustParse(kUpgradeHead);
  UpgradeRequest up;
  ASSERT_EQ(CheckUpgrade(req, &up), UpgradeError::kNone);
  EXPECT_EQ(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_THAT(up.protocols,
              ElementsAre("actioncable-v1-ext-json", "actioncable-v1-json", "anycable-token.xyz"));
}

std::string UpgradeWith(std::string_view method, std::string_view version,
                        std::string_view headers) {
  return std::string(method) + " /cable HTTP/" + std::string(version) + "\r\nHost: h\r\n" +
         std::string(headers) + "\r\n";
}

TEST(Upgrade, Errors) {
  const std::string ok_headers =
      "Upgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  struct Case {
    const char* name;
    std::string head;
    UpgradeError want;
    int status;
  };
  const std::vector<Case> cases = {
      {"case-insensitive tokens ok", UpgradeWith("GET", "1.1", ok_headers), UpgradeError::kNone,
       101},
      {"plain GET", UpgradeWith("GET", "1.1", ""), UpgradeError::kNotUpgrade, 400},
      {"no connection upgrade",
       UpgradeWith("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
       UpgradeError::kNotUpgrade, 400},
      {"upgrade h2c",
       UpgradeWith("GET", "1.1",
                   "Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
       UpgradeError::kNotUpgrade, 400},
      {"POST", UpgradeWith("POST", "1.1", ok_headers), UpgradeError::kBadMethod, 405},
      {"HTTP/1.0", UpgradeWith("GET", "1.0", ok_headers), UpgradeError::kNotUpgrade, 400},
      {"version 8",
       UpgradeWith("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
       UpgradeError::kBadVersion, 400},
      {"no version",
       UpgradeWith("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
       UpgradeError::kBadVersion, 400},
      {"no key",
       UpgradeWith("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
       UpgradeError::kMissingKey, 400},
      {"key of 15 bytes",
       UpgradeWith("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n"),
       UpgradeError::kMissingKey, 400},
      {"key not base64",
       UpgradeWith("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n"),
       UpgradeError::kMissingKey, 400},
  };
  for (const Case& c : cases) {
    Request req = MustParse(c.head);
    UpgradeRequest up;
    EXPECT_EQ(CheckUpgrade(req, &up), c.want) << c.name;
    if (c.want != UpgradeError::kNone) {
      EXPECT_EQ(UpgradeErrorStatus(c.want), c.status) << c.name;
    }
  }
}

TEST(Upgrade, SubprotocolSelection) {
  const std::vector<std::string_view> both = {"actioncable-v1-ext-json", "actioncable-v1-json"};
  const std::vector<std::string_view> ext_only = {"actioncable-v1-ext-json"};
  const std::vector<std::string_view> token_only = {"anycable-token.abc"};
  const std::vector<std::string_view> none = {};
  const std::vector<std::string_view> supported_ext = {"actioncable-v1-json",
                                                       "actioncable-v1-ext-json"};
  // Default (v1 json only).
  EXPECT_EQ(SelectSubprotocol(both), "actioncable-v1-json");
  EXPECT_EQ(SelectSubprotocol(ext_only), std::nullopt);
  EXPECT_EQ(SelectSubprotocol(token_only), std::nullopt);
  EXPECT_EQ(SelectSubprotocol(none), std::nullopt);
  // With ext supported: server preference order wins over client order.
  EXPECT_EQ(SelectSubprotocol(both, supported_ext), "actioncable-v1-json");
  EXPECT_EQ(SelectSubprotocol(ext_only, supported_ext), "actioncable-v1-ext-json");
  EXPECT_EQ(SelectSubprotocol({"anycable-token.abc", "actioncable-v1-ext-json"}, supported_ext),
            "actioncable-v1-ext-json");
  // A token is never echoed even if someone lists it as supported.
  EXPECT_EQ(SelectSubprotocol(token_only, {"anycable-token.abc"}), std::nullopt);
  // Exact match only.
  EXPECT_EQ(SelectSubprotocol({"ActionCable-v1-json"}), std::nullopt);
}

TEST(Upgrade, ResponseBytes) {
  EXPECT_EQ(BuildUpgradeResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "actioncable-v1-json", "1.6.16"),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: actioncable-v1-json\r\n"
            "X-AnyCable-Version: 1.6.16\r\n"
            "\r\n");
  EXPECT_EQ(BuildUpgradeResponse("abc=", std::nullopt, "1.6.16"),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: abc=\r\n"
            "X-AnyCable-Version: 1.6.16\r\n"
            "\r\n");
}

// ---------------------------------------------------------------------------------------------
// Responses

TEST(BuildResponse, Variants) {
  EXPECT_EQ(BuildResponse(200, "Ah, ha, ha, ha, stayin' alive, stayin' alive."),
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 45\r\n"
            "\r\n"
            "Ah, ha, ha, ha, stayin' alive, stayin' alive.");
  EXPECT_EQ(BuildResponse(201, ""), "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(BuildResponse(201, "", "application/json"),
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(BuildResponse(426, "Upgrade Required\n", kDefaultContentType,
                          {{"Sec-WebSocket-Version", "13"}}, true),
            "HTTP/1.1 426 Upgrade Required\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 17\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Connection: close\r\n"
            "\r\n"
            "Upgrade Required\n");
  EXPECT_EQ(BuildResponse(404, "x", ""), "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx");
  EXPECT_EQ(BuildResponse(204, "ignored"),
            "HTTP/1.1 204 No Content\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
}

TEST(BuildResponse, StatusText) {
  EXPECT_EQ(StatusText(200), "OK");
  EXPECT_EQ(StatusText(401), "Unauthorized");
  EXPECT_EQ(StatusText(403), "Forbidden");
  EXPECT_EQ(StatusText(422), "Unprocessable Entity");
  EXPECT_EQ(StatusText(501), "Not Implemented");
  EXPECT_EQ(StatusText(799), "Unknown");
}

// ---------------------------------------------------------------------------------------------
// Query, cookies, origin, url

TEST(Query, Params) {
  EXPECT_EQ(QueryParam("pi=5&ptp=ms", "ptp"), "ms");
  EXPECT_EQ(QueryParam("pi=5&pi=7", "pi"), "5");
  EXPECT_EQ(QueryParam("token=a%2Bb+c%20d", "token"), "a+b c d");
  EXPECT_EQ(QueryParam("a%3Db=1", "a=b"), "1");
  EXPECT_EQ(QueryParam("flag&x=1", "flag"), "");
  EXPECT_EQ(QueryParam("x=", "x"), "");
  EXPECT_EQ(QueryParam("x=1", "y"), std::nullopt);
  EXPECT_EQ(QueryParam("", "x"), std::nullopt);
  EXPECT_EQ(QueryParam("&&x=2&", "x"), "2");
  // Bad escapes make Go skip the pair, so a later good one wins.
  EXPECT_EQ(QueryParam("x=%zz&x=ok", "x"), "ok");
  EXPECT_EQ(QueryParam("x=%4", "x"), std::nullopt);
  EXPECT_EQ(QueryParam("x=a=b", "x"), "a=b");
}

TEST(Query, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%20b%2fc"), "a b/c");
  EXPECT_EQ(PercentDecode("a+b"), "a+b");
  EXPECT_EQ(PercentDecode("100%"), "100%");
  EXPECT_EQ(PercentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(PercentDecode("%E2%9C%93"), "\xE2\x9C\x93");
}

TEST(Cookies, Filter) {
  const std::string header = "_session=abc==; remember=1;  theme = dark ;flag; other=x";
  EXPECT_EQ(FilterCookies(header, {}), header);  // no filter: unchanged
  EXPECT_EQ(FilterCookies(header, {"_session"}), "_session=abc==");
  EXPECT_EQ(FilterCookies(header, {"theme", "_session"}), "_session=abc==; theme=dark");
  EXPECT_EQ(FilterCookies(header, {"remember", "other"}), "remember=1; other=x");
  EXPECT_EQ(FilterCookies(header, {"flag"}), "");
  EXPECT_EQ(FilterCookies(header, {"missing"}), "");
  EXPECT_EQ(FilterCookies("", {"a"}), "");
  EXPECT_EQ(FilterCookies("Session=1", {"session"}), "");  // names are case-sensitive
}

TEST(Origin, Rules) {
  const std::vector<std::string> list = {"example.com", "localhost:3000", "*.anycable.io"};
  EXPECT_TRUE(OriginAllowed(std::nullopt, {}));
  EXPECT_TRUE(OriginAllowed("https://evil.com", {}));
  EXPECT_FALSE(OriginAllowed(std::nullopt, list));
  EXPECT_FALSE(OriginAllowed("", list));
  EXPECT_FALSE(OriginAllowed("null", list));
  EXPECT_TRUE(OriginAllowed("https://example.com", list));
  EXPECT_TRUE(OriginAllowed("HTTPS://EXAMPLE.COM", list));
  EXPECT_TRUE(OriginAllowed("http://example.com/path", list));
  EXPECT_FALSE(OriginAllowed("https://example.com:8443", list));  // port is part of the host
  EXPECT_TRUE(OriginAllowed("http://localhost:3000", list));
  EXPECT_FALSE(OriginAllowed("http://localhost", list));
  EXPECT_FALSE(OriginAllowed("http://localhost:3001", list));
  EXPECT_TRUE(OriginAllowed("https://demo.anycable.io", list));
  EXPECT_TRUE(OriginAllowed("https://a.b.anycable.io", list));
  EXPECT_FALSE(OriginAllowed("https://anycable.io", list));
  EXPECT_FALSE(OriginAllowed("https://evilanycable.io", list));
  EXPECT_FALSE(OriginAllowed("https://sub.example.com", list));
  EXPECT_FALSE(OriginAllowed("https://example.com.evil.net", list));
  EXPECT_TRUE(OriginAllowed("https://example.com", {"EXAMPLE.COM"}));  // entries lowercased
  EXPECT_TRUE(OriginAllowed("https://user@example.com", list));
}

TEST(Url, RequestUrl) {
  Request req = MustParse(kUpgradeHead);
  EXPECT_EQ(RequestUrl(req, false), "http://example.com:8080/cable?token=abc&pi=5");
  EXPECT_EQ(RequestUrl(req, true), "https://example.com:8080/cable?token=abc&pi=5");
  Request no_host = MustParse("GET /cable HTTP/1.0\r\n\r\n");
  EXPECT_EQ(RequestUrl(no_host, false), "http:///cable");
}

TEST(HttpUpgrade, PermessageDeflateOfferAndAnswer) {
  auto offers = [](const std::string& head) {
    std::string buf = "GET /cable HTTP/1.1\r\nHost: x\r\n" + head + "\r\n";
    Request req;
    ParseError err;
    EXPECT_EQ(ParseRequestHead(buf, 8192, &req, &err), ParseStatus::kComplete);
    return OffersPermessageDeflate(req);
  };
  EXPECT_TRUE(offers("Sec-WebSocket-Extensions: permessage-deflate\r\n"));
  EXPECT_TRUE(offers("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
  EXPECT_TRUE(offers("Sec-WebSocket-Extensions: x-foo; a=1, permessage-deflate ;x\r\n"));
  EXPECT_TRUE(offers(
      "Sec-WebSocket-Extensions: x-foo\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"));
  EXPECT_FALSE(offers(""));
  EXPECT_FALSE(offers("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"));
  EXPECT_FALSE(offers("Sec-WebSocket-Extensions: permessage-deflatex\r\n"));
  std::string r = BuildUpgradeResponse("k", std::nullopt, "v", "permessage-deflate; a");
  EXPECT_NE(r.find("\r\nSec-WebSocket-Extensions: permessage-deflate; a\r\n"), std::string::npos);
  EXPECT_EQ(BuildUpgradeResponse("k", std::nullopt, "v").find("Extensions"), std::string::npos);
}

}  // namespace
}  // namespace cable::http
