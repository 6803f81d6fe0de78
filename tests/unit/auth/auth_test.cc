// Vectors are built here with OpenSSL's HMAC and EVP base64 directly, not with the module's
// helpers, so a bug shared by encoder and verifier cannot hide.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include <gtest/gtest.h>

#include "auth/auth.h"

namespace cable::auth {
namespace {

std::string OsslB64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string B64Url(const std::string& in) {
  std::string s = OsslB64(in);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& ch : s) {
    if (ch == '+') ch = '-';
    if (ch == '/') ch = '_';
  }
  return s;
}

std::string Hmac(const EVP_MD* md, const std::string& key, const std::string& msg) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), d, &len);
  return std::string(reinterpret_cast<char*>(d), len);
}

std::string Hex(const std::string& raw) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : raw) {
    out += k[ch >> 4];
    out += k[ch & 15];
  }
  return out;
}

std::string MakeJwt(const std::string& header, const std::string& payload, const std::string& key,
                    const EVP_MD* md = EVP_sha256()) {
  std::string signing = B64Url(header) + "." + B64Url(payload);
  return signing + "." + B64Url(Hmac(md, key, signing));
}

std::string Sign(const std::string& json, const std::string& key) {
  std::string data = OsslB64(json);
  return data + "--" + Hex(Hmac(EVP_sha256(), key, data));
}

constexpr int64_t kNow = 1700000000;
const std::string kSecret = "s3cr3t";
const std::string kExt = R"({"user_id":"42"})";
const std::string kPayload = R"({"ext":"{\"user_id\":\"42\"}","exp":1800000000})";

TEST(VerifyJwt, AcceptsHs256Hs384Hs512) {
  struct Case {
    const char* alg;
    const EVP_MD* md;
  } cases[] = {{"HS256", EVP_sha256()}, {"HS384", EVP_sha384()}, {"HS512", EVP_sha512()}};
  for (const auto& c : cases) {
    std::string token =
        MakeJwt(std::string(R"({"alg":")") + c.alg + R"(","typ":"JWT"})", kPayload, kSecret, c.md);
    auto r = VerifyJwt(token, kSecret, kNow);
    ASSERT_TRUE(r.ok()) << c.alg << " " << JwtErrorName(r.error());
    EXPECT_EQ(r.value().ext, kExt);
    EXPECT_EQ(r.value().exp, 1800000000);
  }
}

TEST(VerifyJwt, NoExpIsAccepted) {
  auto r = VerifyJwt(MakeJwt(R"({"alg":"HS256"})", R"({"ext":"{}"})", kSecret), kSecret, kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().ext, "{}");
  EXPECT_EQ(r.value().exp, 0);
}

TEST(VerifyJwt, WrongSecretIsBadSignature) {
  auto r = VerifyJwt(MakeJwt(R"({"alg":"HS256"})", kPayload, "other"), kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kBadSignature);
}

TEST(VerifyJwt, EmptySecretNeverVerifies) {
  auto r = VerifyJwt(MakeJwt(R"({"alg":"HS256"})", kPayload, ""), "", kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kBadSignature);
}

TEST(VerifyJwt, AlgNoneRejected) {
  std::string token = B64Url(R"({"alg":"none"})") + "." + B64Url(kPayload) + ".";
  auto r = VerifyJwt(token, kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kAlgNone);
}

TEST(VerifyJwt, Rs256AndUnknownAndMissingAlgRejected) {
  for (const char* header :
       {R"({"alg":"RS256"})", R"({"alg":"XX1"})", R"({"typ":"JWT"})", R"({"alg":5})"}) {
    auto r = VerifyJwt(MakeJwt(header, kPayload, kSecret), kSecret, kNow);
    ASSERT_FALSE(r.ok()) << header;
    EXPECT_EQ(r.error(), JwtError::kUnsupportedAlg) << header;
  }
}

TEST(VerifyJwt, TamperedPayloadIsBadSignature) {
  std::string token = MakeJwt(R"({"alg":"HS256"})", kPayload, kSecret);
  size_t d1 = token.find('.');
  size_t d2 = token.find('.', d1 + 1);
  std::string forged = token.substr(0, d1) + "." +
                       B64Url(R"({"ext":"{\"user_id\":\"1\"}","exp":1800000000})") +
                       token.substr(d2);
  auto r = VerifyJwt(forged, kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kBadSignature);
}

TEST(VerifyJwt, Expired) {
  std::string token = MakeJwt(R"({"alg":"HS256"})", R"({"ext":"{}","exp":1700000000})", kSecret);
  auto r = VerifyJwt(token, kSecret, kNow);  // now == exp counts as expired
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kExpired);
  EXPECT_TRUE(VerifyJwt(token, kSecret, kNow - 1).ok());
}

TEST(VerifyJwt, NonNumericExpIsMalformed) {
  auto r = VerifyJwt(MakeJwt(R"({"alg":"HS256"})", R"({"ext":"{}","exp":"soon"})", kSecret),
                     kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kMalformed);
}

TEST(VerifyJwt, MissingExt) {
  auto r = VerifyJwt(MakeJwt(R"({"alg":"HS256"})", R"({"sub":"x"})", kSecret), kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kMissingExt);
}

TEST(VerifyJwt, ExtNotString) {
  auto r =
      VerifyJwt(MakeJwt(R"({"alg":"HS256"})", R"({"ext":{"user_id":1}})", kSecret), kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kExtNotString);
}

TEST(VerifyJwt, Malformed) {
  std::string good = MakeJwt(R"({"alg":"HS256"})", kPayload, kSecret);
  const std::string bad[] = {
      "",
      "abc",
      "a.b",
      good + ".x",                                           // four parts
      "!!!." + good.substr(good.find('.') + 1),              // header not base64url
      B64Url("not json") + "." + B64Url(kPayload) + ".sig",  // header not JSON
      B64Url("[1]") + "." + B64Url(kPayload) + ".sig",       // header not an object
      MakeJwt(R"({"alg":"HS256"})", "not json", kSecret),    // payload not JSON
      MakeJwt(R"({"alg":"HS256"})", R"(["ext"])", kSecret),  // payload not an object
  };
  for (const auto& token : bad) {
    auto r = VerifyJwt(token, kSecret, kNow);
    ASSERT_FALSE(r.ok()) << token;
    EXPECT_EQ(r.error(), JwtError::kMalformed) << token;
  }
}

TEST(VerifyJwt, SignatureNotBase64IsBadSignature) {
  std::string token = MakeJwt(R"({"alg":"HS256"})", kPayload, kSecret);
  token.back() = '*';
  auto r = VerifyJwt(token, kSecret, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), JwtError::kBadSignature);
}

TEST(VerifySignedStream, ValidNames) {
  for (const std::string name : {"chat", "chat:42", "a", "ünïcode <&>", "ab", "abc"}) {
    std::string json = "\"" + name + "\"";
    auto r = VerifySignedStream(Sign(json, kSecret), kSecret);
    ASSERT_TRUE(r.ok()) << name << " " << SignedStreamErrorName(r.error());
    EXPECT_EQ(r.value(), name);
  }
  auto esc = VerifySignedStream(Sign(R"("a\"b\u0041")", kSecret), kSecret);
  ASSERT_TRUE(esc.ok());
  EXPECT_EQ(esc.value(), "a\"bA");
}

TEST(VerifySignedStream, WrongSecret) {
  auto r = VerifySignedStream(Sign("\"chat\"", "other"), kSecret);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), SignedStreamError::kBadSignature);
  auto empty = VerifySignedStream(Sign("\"chat\"", ""), "");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error(), SignedStreamError::kBadSignature);
}

TEST(VerifySignedStream, TamperedData) {
  std::string s = Sign("\"chat\"", kSecret);
  s[0] = s[0] == 'I' ? 'J' : 'I';
  auto r = VerifySignedStream(s, kSecret);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), SignedStreamError::kBadSignature);
}

TEST(VerifySignedStream, Malformed) {
  std::string s = Sign("\"chat\"", kSecret);
  for (const std::string& bad :
       {std::string("chat"), std::string(""), std::string("--"), s.substr(0, s.find("--") + 2),
        "--" + s.substr(s.find("--") + 2), s + "--00"}) {
    auto r = VerifySignedStream(bad, kSecret);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error(), SignedStreamError::kMalformed) << bad;
  }
}

TEST(VerifySignedStream, BadEncodingWithValidSignature) {
  // Correctly signed, but the data is not std base64 (url alphabet / missing padding) or not JSON.
  for (const std::string& data :
       {std::string("ImNoYXQi_"), std::string("ImNoYXQ"), OsslB64("not json")}) {
    std::string s = data + "--" + Hex(Hmac(EVP_sha256(), kSecret, data));
    auto r = VerifySignedStream(s, kSecret);
    ASSERT_FALSE(r.ok()) << data;
    EXPECT_EQ(r.error(), SignedStreamError::kBadEncoding) << data;
  }
}

TEST(VerifySignedStream, NotAString) {
  for (const std::string json : {"42", "[\"chat\"]", "{\"a\":1}", "null"}) {
    auto r = VerifySignedStream(Sign(json, kSecret), kSecret);
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_EQ(r.error(), SignedStreamError::kNotAString) << json;
  }
}

TEST(Base64Encode, MatchesOpenSsl) {
  for (const std::string in : {"", "a", "ab", "abc", "abcd", "\"chat:42\"", "\xff\xfe\x00\x01"}) {
    EXPECT_EQ(Base64Encode(in), OsslB64(in)) << in;
  }
}

StreamsOptions Opts() {
  StreamsOptions o;
  o.streams_secret = "streams";
  o.turbo_secret = "turbo";
  o.cable_ready_secret = "cr";
  return o;
}

std::string PubsubSigned(const std::string& signed_name) {
  return R"({"channel":"$pubsub","signed_stream_name":")" + signed_name + "\"}";
}

TEST(ResolveBuiltinChannel, SignedPubsub) {
  auto d = ResolveBuiltinChannel(PubsubSigned(Sign("\"chat\"", "streams")), Opts());
  EXPECT_EQ(d.kind, BuiltinKind::kPubSub);
  EXPECT_TRUE(d.confirmed);
  EXPECT_EQ(d.stream, "chat");
  EXPECT_FALSE(d.whisper);
  auto bad = ResolveBuiltinChannel(PubsubSigned(Sign("\"chat\"", "turbo")), Opts());
  EXPECT_EQ(bad.kind, BuiltinKind::kPubSub);
  EXPECT_FALSE(bad.confirmed);
}

TEST(ResolveBuiltinChannel, PublicStreamsOnlyWhenEnabled) {
  std::string id = R"({"channel":"$pubsub","stream_name":"chat"})";
  auto off = ResolveBuiltinChannel(id, Opts());
  EXPECT_EQ(off.kind, BuiltinKind::kPubSub);
  EXPECT_FALSE(off.confirmed);
  StreamsOptions o = Opts();
  o.public_streams = true;
  o.whisper = true;
  auto on = ResolveBuiltinChannel(id, o);
  EXPECT_TRUE(on.confirmed);
  EXPECT_EQ(on.stream, "chat");
  EXPECT_TRUE(on.whisper);
  auto empty = ResolveBuiltinChannel(R"({"channel":"$pubsub","stream_name":""})", o);
  EXPECT_FALSE(empty.confirmed);
  auto neither = ResolveBuiltinChannel(R"({"channel":"$pubsub"})", o);
  EXPECT_EQ(neither.kind, BuiltinKind::kPubSub);
  EXPECT_FALSE(neither.confirmed);
}

TEST(ResolveBuiltinChannel, TurboAndCableReadyOnlyWhenEnabled) {
  std::string turbo = R"({"channel":"Turbo::StreamsChannel","signed_stream_name":")" +
                      Sign("\"t\"", "turbo") + "\"}";
  std::string cr =
      R"({"channel":"CableReady::Stream","identifier":")" + Sign("\"c\"", "cr") + "\"}";
  EXPECT_EQ(ResolveBuiltinChannel(turbo, Opts()).kind, BuiltinKind::kNone);
  EXPECT_EQ(ResolveBuiltinChannel(cr, Opts()).kind, BuiltinKind::kNone);
  StreamsOptions o = Opts();
  o.turbo_streams = true;
  o.cable_ready = true;
  o.whisper = true;
  auto t = ResolveBuiltinChannel(turbo, o);
  EXPECT_EQ(t.kind, BuiltinKind::kTurbo);
  EXPECT_TRUE(t.confirmed);
  EXPECT_EQ(t.stream, "t");
  EXPECT_FALSE(t.whisper);
  auto c = ResolveBuiltinChannel(cr, o);
  EXPECT_EQ(c.kind, BuiltinKind::kCableReady);
  EXPECT_TRUE(c.confirmed);
  EXPECT_EQ(c.stream, "c");
  // Signed with the wrong secret: still the built-in, rejected.
  std::string wrong =
      R"({"channel":"Turbo::StreamsChannel","signed_stream_name":")" + Sign("\"t\"", "cr") + "\"}";
  auto w = ResolveBuiltinChannel(wrong, o);
  EXPECT_EQ(w.kind, BuiltinKind::kTurbo);
  EXPECT_FALSE(w.confirmed);
}

TEST(ResolveBuiltinChannel, OtherIdentifiersGoToRpc) {
  for (const char* id :
       {R"({"channel":"ChatChannel"})", "not json", "[1]", R"({"channel":1})", ""}) {
    EXPECT_EQ(ResolveBuiltinChannel(id, Opts()).kind, BuiltinKind::kNone) << id;
  }
}

}  // namespace
}  // namespace cable::auth
