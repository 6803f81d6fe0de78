// Token and signed-stream builders for the auth integration tests: OpenSSL HMAC and base64 used
// directly, so the server's own implementation is checked against an independent one.
#pragma once

#include <string>

namespace cable::itauth {

std::string B64(const std::string& bytes);     // std alphabet, padded
std::string B64Url(const std::string& bytes);  // url alphabet, unpadded
std::string HmacRaw(const char* digest, const std::string& key, const std::string& msg);
std::string Hex(const std::string& raw);
// header.payload.signature with HMAC `digest` ("SHA256", "SHA384", "SHA512").
std::string Jwt(const std::string& header_json, const std::string& payload_json,
                const std::string& key, const char* digest = "SHA256");
// Rails MessageVerifier: base64(json) + "--" + hex HMAC-SHA256(key, base64 part).
std::string SignStream(const std::string& stream_name, const std::string& key);

}  // namespace cable::itauth
