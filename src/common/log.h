// Logging facade. Any thread may log; a line is formatted into a thread-local buffer and written
// with one write(2) to stderr, so lines from different threads never interleave.
// Connection-scoped lines carry sid=<sid>. Every line ends with nodeid=<id> (text) or has a
// "nodeid" field (JSON) once SetNodeId() was called, as anycable-go's logs do. Nothing on a
// per-message path logs at info level.
#pragma once

#include <cstdarg>

namespace cable::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLevel(Level level);
void SetJsonFormat(bool json);
// Call once from main() before other threads start; lines written before carry no node id.
void SetNodeId(const char* id);
bool Enabled(Level level);
// printf-style message; the facade adds time, level and a newline.
void Write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace cable::log

#define CABLE_LOG(level, ...)                                       \
  do {                                                              \
    if (::cable::log::Enabled(::cable::log::Level::level))          \
      ::cable::log::Write(::cable::log::Level::level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) CABLE_LOG(kDebug, __VA_ARGS__)
#define LOG_INFO(...) CABLE_LOG(kInfo, __VA_ARGS__)
#define LOG_WARN(...) CABLE_LOG(kWarn, __VA_ARGS__)
#define LOG_ERROR(...) CABLE_LOG(kError, __VA_ARGS__)
