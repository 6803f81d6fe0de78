#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

namespace cable::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_json{false};
// Written once before the other threads exist (see SetNodeId); read-only afterwards.
char g_node_id[32] = "";
const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "DEBUG";
    case Level::kInfo:
      return "INFO";
    case Level::kWarn:
      return "WARN";
    case Level::kError:
      return "ERROR";
  }
  return "?";
}
}  // namespace

void SetLevel(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
void SetJsonFormat(bool json) { g_json.store(json, std::memory_order_relaxed); }
void SetNodeId(const char* id) {
  std::snprintf(g_node_id, sizeof(g_node_id), "%s", id);
  // The id goes verbatim into text and JSON lines: characters that would need quoting there
  // become '_' (generated ids never contain any).
  for (char* p = g_node_id; *p; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c <= 0x20 || c == '"' || c == '\\' || c == 0x7f) *p = '_';
  }
}
bool Enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void Write(Level level, const char* fmt, ...) {
  thread_local char buf[4096];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm_utc;
  gmtime_r(&ts.tv_sec, &tm_utc);
  char when[96];
  std::snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm_utc.tm_year + 1900,
                tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec,
                ts.tv_nsec / 1000000);
  char msg[3500];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  int n;
  if (g_json.load(std::memory_order_relaxed)) {
    // Escape the message for JSON: quotes, backslashes and control characters.
    char esc[sizeof(msg) * 2];
    size_t j = 0;
    for (const char* p = msg; *p && j + 7 < sizeof(esc); ++p) {
      unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"' || c == '\\') {
        esc[j++] = '\\';
        esc[j++] = static_cast<char>(c);
      } else if (c < 0x20) {
        j += std::snprintf(esc + j, sizeof(esc) - j, "\\u%04x", c);
      } else {
        esc[j++] = static_cast<char>(c);
      }
    }
    esc[j] = 0;
    if (g_node_id[0] != 0) {
      n = std::snprintf(buf, sizeof(buf),
                        "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\",\"nodeid\":\"%s\"}\n",
                        when, LevelName(level), esc, g_node_id);
    } else {
      n = std::snprintf(buf, sizeof(buf), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
                        when, LevelName(level), esc);
    }
  } else if (g_node_id[0] != 0) {
    n = std::snprintf(buf, sizeof(buf), "%s %s %s nodeid=%s\n", when, LevelName(level), msg,
                      g_node_id);
  } else {
    n = std::snprintf(buf, sizeof(buf), "%s %s %s\n", when, LevelName(level), msg);
  }
  if (n > 0) {
    size_t len = static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1;
    ssize_t ignored = ::write(STDERR_FILENO, buf, len);
    (void)ignored;
  }
}

}  // namespace cable::log
