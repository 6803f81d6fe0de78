#include "protocol/json_util.h"

#include <simdjson.h>

#include <cstring>

namespace cable::protocol::internal {

std::string_view PaddedBuffer::Assign(std::string_view s) {
  const size_t need = s.size() + simdjson::SIMDJSON_PADDING;
  if (need > capacity_) {
    size_t cap = capacity_ == 0 ? 1024 : capacity_;
    while (cap < need) cap *= 2;
    buf_ = std::make_unique_for_overwrite<char[]>(cap);
    capacity_ = cap;
  }
  if (!s.empty()) std::memcpy(buf_.get(), s.data(), s.size());
  std::memset(buf_.get() + s.size(), 0, simdjson::SIMDJSON_PADDING);
  return {buf_.get(), s.size()};
}

size_t DecodeUtf8(const unsigned char* p, size_t n, uint32_t* cp) {
  const unsigned char c = p[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  auto cont = [](unsigned char b) { return (b & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) {
    if (n < 2 || !cont(p[1])) return 0;
    *cp = (uint32_t{c & 0x1Fu} << 6) | (p[1] & 0x3Fu);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3) return 0;
    const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;  // 0xE0: reject overlong
    const unsigned char hi = c == 0xED ? 0x9F : 0xBF;  // 0xED: reject UTF-16 surrogates
    if (p[1] < lo || p[1] > hi || !cont(p[2])) return 0;
    *cp = (uint32_t{c & 0x0Fu} << 12) | (uint32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3Fu);
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4) return 0;
    const unsigned char lo = c == 0xF0 ? 0x90 : 0x80;  // reject overlong
    const unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;  // reject > U+10FFFF
    if (p[1] < lo || p[1] > hi || !cont(p[2]) || !cont(p[3])) return 0;
    *cp = (uint32_t{c & 0x07u} << 18) | (uint32_t{p[1] & 0x3Fu} << 12) |
          (uint32_t{p[2] & 0x3Fu} << 6) | (p[3] & 0x3Fu);
    return 4;
  }
  return 0;
}

bool RepairUtf8(std::string_view s, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  size_t start = 0;
  bool repaired = false;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    uint32_t cp;
    const size_t len = DecodeUtf8(p + i, n - i, &cp);
    if (len != 0) {
      i += len;
      continue;
    }
    if (!repaired) {
      out.clear();
      out.reserve(n + 16);
      repaired = true;
    }
    out.append(s.data() + start, i - start);
    out.append("\xEF\xBF\xBD");
    ++i;  // like Go, one replacement per offending byte
    start = i;
  }
  if (repaired) out.append(s.data() + start, n - start);
  return repaired;
}

bool KeyMatches(std::string_view key, std::string_view field) {
  if (key.size() != field.size()) return false;
  for (size_t i = 0; i < key.size(); ++i) {
    char a = key[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != field[i]) return false;  // `field` is always given in lower case
  }
  return true;
}

std::string_view TrimJsonWhitespace(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  size_t b = 0;
  size_t e = s.size();
  while (b < e && ws(s[b])) ++b;
  while (e > b && ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

simdjson::error_code ParseDom(simdjson::dom::parser& parser, PaddedBuffer& scratch,
                              std::string& repaired, std::string_view input,
                              simdjson::dom::element* root, std::string_view* parsed) {
  std::string_view text = scratch.Assign(input);
  auto err = parser.parse(text.data(), text.size(), false).get(*root);
  if (err == simdjson::UTF8_ERROR && RepairUtf8(input, repaired)) {
    text = scratch.Assign(repaired);
    err = parser.parse(text.data(), text.size(), false).get(*root);
  }
  *parsed = text;
  return err;
}

simdjson::error_code RawJson(simdjson::ondemand::value value, std::string_view* out) {
  simdjson::ondemand::json_type type;
  if (auto err = value.type().get(type)) return err;
  std::string_view raw;
  if (type == simdjson::ondemand::json_type::object) {
    simdjson::ondemand::object obj;
    if (auto err = value.get_object().get(obj)) return err;
    if (auto err = obj.raw_json().get(raw)) return err;
  } else if (type == simdjson::ondemand::json_type::array) {
    simdjson::ondemand::array arr;
    if (auto err = value.get_array().get(arr)) return err;
    if (auto err = arr.raw_json().get(raw)) return err;
  } else {
    raw = value.raw_json_token();
  }
  // simdjson's views run up to the next token, so they include the blanks before it.
  *out = TrimJsonWhitespace(raw);
  return simdjson::SUCCESS;
}

}  // namespace cable::protocol::internal
