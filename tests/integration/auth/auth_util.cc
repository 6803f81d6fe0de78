#include "auth_util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "test_support.h"

namespace cable::itauth {

std::string B64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string B64Url(const std::string& in) {
  std::string s = B64(in);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& ch : s) {
    if (ch == '+') ch = '-';
    if (ch == '/') ch = '_';
  }
  return s;
}

std::string HmacRaw(const char* digest, const std::string& key, const std::string& msg) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_get_digestbyname(digest), key.data(), static_cast<int>(key.size()),
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

std::string Jwt(const std::string& header_json, const std::string& payload_json,
                const std::string& key, const char* digest) {
  std::string signing = B64Url(header_json) + "." + B64Url(payload_json);
  return signing + "." + B64Url(HmacRaw(digest, key, signing));
}

std::string SignStream(const std::string& stream_name, const std::string& key) {
  std::string data = B64(cable::test::JsonString(stream_name));
  return data + "--" + Hex(HmacRaw("SHA256", key, data));
}

}  // namespace cable::itauth
