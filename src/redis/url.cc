// ParseUrl and Options::Describe: anycable-go's --redis_url / --redis_sentinels forms.
#include <cctype>
#include <string>
#include <vector>

#include "redis/redis.h"

namespace cable::redis {
namespace {

using ParseResult = cable::Result<Options, std::string>;

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool PercentDecode(const std::string& in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = HexValue(in[i + 1]);
    int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool AllDigits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool ParsePort(const std::string& s, int* port) {
  if (!AllDigits(s) || s.size() > 5) return false;
  int p = std::stoi(s);
  if (p < 1 || p > 65535) return false;
  *port = p;
  return true;
}

// "host", "host:port", "[v6]", "[v6]:port". Returns an error text or "".
std::string ParseHostPort(const std::string& s, int default_port, Endpoint* ep) {
  ep->port = default_port;
  std::string port_text;
  bool has_port = false;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos) return "unterminated IPv6 address \"" + s + "\"";
    ep->host = s.substr(1, close - 1);
    std::string rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return "bad address \"" + s + "\"";
      port_text = rest.substr(1);
      has_port = true;
    }
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos) {
      ep->host = s;
    } else {
      ep->host = s.substr(0, colon);
      port_text = s.substr(colon + 1);
      has_port = true;
      if (ep->host.find(':') != std::string::npos) {
        return "IPv6 address needs brackets: \"" + s + "\"";
      }
    }
  }
  if (has_port && !ParsePort(port_text, &ep->port)) return "bad port \"" + port_text + "\"";
  return "";
}

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// One redis:// or rediss:// URL (a missing scheme means redis://, as anycable-go 1.6).
ParseResult ParseOneUrl(const std::string& input) {
  const std::string flag = "--redis_url: ";
  Options opts;
  const std::string url = input.find("://") == std::string::npos ? "redis://" + input : input;
  size_t sep = url.find("://");
  std::string scheme = url.substr(0, sep);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "rediss") {
    opts.tls = true;
  } else if (scheme != "redis") {
    return MakeError(flag + "unsupported scheme \"" + scheme + "\" (want redis:// or rediss://)");
  }
  std::string rest = url.substr(sep + 3);
  // Query options (go-redis style ?dial_timeout=...) are not supported; they are ignored.
  rest = rest.substr(0, rest.find('?'));
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);

  size_t at = authority.rfind('@');
  if (at != std::string::npos) {
    std::string userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    std::string user = userinfo.substr(0, colon);
    std::string pass = colon == std::string::npos ? "" : userinfo.substr(colon + 1);
    if (!PercentDecode(user, &opts.username)) {
      return MakeError(flag + "bad percent-encoding in the user name");
    }
    if (!PercentDecode(pass, &opts.password)) {
      return MakeError(flag + "bad percent-encoding in the password");
    }
  }

  Endpoint ep;
  std::string err = ParseHostPort(authority, 6379, &ep);
  if (!err.empty()) return MakeError(flag + err);
  opts.host = ep.host.empty() ? "localhost" : ep.host;
  opts.port = ep.port;

  if (path.size() > 1) {
    std::string db = path.substr(1);
    if (!AllDigits(db) || db.size() > 9) {
      return MakeError(flag + "bad database \"" + path + "\" (want /<number>)");
    }
    opts.db = std::stoi(db);
  }
  return opts;
}

}  // namespace

ParseResult ParseUrl(const std::string& url, const std::string& sentinels) {
  const std::string flag = "--redis_url: ";
  // A comma-separated list is a Redis Cluster: the first URL's options, every URL's address.
  std::vector<std::string> entries;
  for (size_t start = 0;;) {
    size_t comma = url.find(',', start);
    entries.push_back(Trim(url.substr(start, comma == std::string::npos ? comma : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  Options opts;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].empty()) {
      return MakeError(flag + "empty address #" + std::to_string(i + 1) + " in \"" + url + "\"");
    }
    auto one = ParseOneUrl(entries[i]);
    if (!one.ok()) return one;
    if (i == 0) opts = one.value();
    if (entries.size() > 1) {
      if (one->db != 0) {
        return MakeError(flag + "a Redis Cluster has only database 0, got /" +
                         std::to_string(one->db) + " in \"" + entries[i] + "\"");
      }
      opts.cluster_seeds.push_back(Endpoint{one->host, one->port});
    }
  }
  opts.cluster = entries.size() > 1;
  if (opts.cluster_mode() && !Trim(sentinels).empty()) {
    return MakeError(flag +
                     "a list of addresses (Redis Cluster) cannot be used with --redis_sentinels");
  }

  std::string list = Trim(sentinels);
  if (!list.empty()) {
    const std::string sflag = "--redis_sentinels: ";
    size_t sat = list.rfind('@');
    if (sat != std::string::npos) {
      std::string secret = list.substr(0, sat);
      if (!secret.empty() && secret[0] == ':') secret = secret.substr(1);
      opts.sentinel_password = secret;
      list = list.substr(sat + 1);
    }
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      std::string item = Trim(list.substr(start, comma - start));
      if (item.empty()) return MakeError(sflag + "empty address in \"" + sentinels + "\"");
      Endpoint s;
      std::string serr = ParseHostPort(item, 26379, &s);
      if (!serr.empty()) return MakeError(sflag + serr);
      if (s.host.empty()) return MakeError(sflag + "missing host in \"" + item + "\"");
      opts.sentinels.push_back(std::move(s));
      start = comma + 1;
    }
  }
  return opts;
}

std::string Options::Describe() const {
  if (cluster_mode()) {
    std::string s = "cluster ";
    for (size_t i = 0; i < cluster_seeds.size(); ++i) {
      if (i) s += ",";
      s += HostPort(cluster_seeds[i].host, cluster_seeds[i].port);
    }
    return tls ? s + " (tls)" : s;
  }
  if (sentinel_mode()) {
    std::string s = "sentinels ";
    for (size_t i = 0; i < sentinels.size(); ++i) {
      if (i) s += ",";
      s += HostPort(sentinels[i].host, sentinels[i].port);
    }
    s += " (master " + host;
    if (db != 0) s += ", db " + std::to_string(db);
    if (tls) s += ", tls";
    return s + ")";
  }
  return std::string(tls ? "rediss://" : "redis://") + HostPort(host, port) + "/" +
         std::to_string(db);
}

}  // namespace cable::redis
