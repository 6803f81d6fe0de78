// Micro-benchmarks for the protocol hot paths, each next to a naive baseline in the same binary so
// results can be reported as ratios: client "message" frame decode, and broadcast frame building.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/command.h"
#include "protocol/encode.h"

namespace {

using namespace cable::protocol;

const std::string kMessageFrame =
    R"({"command":"message","identifier":"{\"channel\":\"ChatChannel\",\"id\":42}",)"
    R"("data":"{\"action\":\"speak\",\"text\":\"hello world, how are you doing today?\"}"})";

const std::string kIdentifier = R"({"channel":"ChatChannel","id":42})";
const std::string kMessageJson =
    R"({"text":"hello world, how are you doing today?","user":{"id":42,"name":"Jo"},"at":1700000000})";

// ---- naive baseline: find each key with std::string::find, unescape the string after it. -------
// No validation at all (so it does strictly less work than the real decoder).
bool NaiveString(const std::string& s, size_t pos, std::string* out) {
  while (pos < s.size() && (s[pos] == ' ' || s[pos] == ':')) ++pos;
  if (pos >= s.size() || s[pos] != '"') return false;
  out->clear();
  for (++pos; pos < s.size(); ++pos) {
    char c = s[pos];
    if (c == '"') return true;
    if (c == '\\' && pos + 1 < s.size()) {
      char e = s[++pos];
      switch (e) {
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 'u':
          if (pos + 4 < s.size()) {
            unsigned v = 0;
            std::sscanf(s.c_str() + pos + 1, "%4x", &v);
            out->push_back(static_cast<char>(v));  // ASCII only; good enough for a baseline
            pos += 4;
          }
          break;
        default:
          out->push_back(e);
      }
    } else {
      out->push_back(c);
    }
  }
  return false;
}

bool NaiveField(const std::string& frame, const std::string& key, std::string* out) {
  size_t pos = frame.find("\"" + key + "\"");
  if (pos == std::string::npos) return false;
  return NaiveString(frame, pos + key.size() + 2, out);
}

struct NaiveCommand {
  std::string command, identifier, data;
};

bool NaiveDecode(std::string_view frame, NaiveCommand* cmd) {
  std::string copy(frame);
  return NaiveField(copy, "command", &cmd->command) &&
         NaiveField(copy, "identifier", &cmd->identifier) && NaiveField(copy, "data", &cmd->data);
}

void BM_DecodeMessage_Ringcable(benchmark::State& state) {
  CommandDecoder decoder;
  for (auto _ : state) {
    auto r = decoder.Decode(kMessageFrame);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kMessageFrame.size()));
}
BENCHMARK(BM_DecodeMessage_Ringcable);

void BM_DecodeMessage_NaiveBaseline(benchmark::State& state) {
  for (auto _ : state) {
    NaiveCommand cmd;
    bool ok = NaiveDecode(kMessageFrame, &cmd);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(cmd);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kMessageFrame.size()));
}
BENCHMARK(BM_DecodeMessage_NaiveBaseline);

// ---- broadcast frame building --------------------------------------------------------------

void BM_BuildBroadcast_WriteBroadcast(benchmark::State& state) {
  std::vector<char> buf;
  for (auto _ : state) {
    const size_t n = BroadcastSize(kIdentifier, kMessageJson);
    if (buf.size() < n) buf.resize(n);
    WriteBroadcast(buf.data(), kIdentifier, kMessageJson);
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_BuildBroadcast_WriteBroadcast);

void BM_BuildBroadcast_EncodeBroadcast(benchmark::State& state) {
  for (auto _ : state) {
    std::string frame = EncodeBroadcast(kIdentifier, kMessageJson);
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_BuildBroadcast_EncodeBroadcast);

std::string NaiveEscape(const std::string& s) {
  std::ostringstream os;
  os << '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      os << '\\' << c;
    } else if (c == '<' || c == '>' || c == '&' || c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\u%04x", c);
      os << b;
    } else {
      os << c;
    }
  }
  os << '"';
  return os.str();
}

void BM_BuildBroadcast_OstreamBaseline(benchmark::State& state) {
  for (auto _ : state) {
    std::ostringstream os;
    os << "{\"identifier\":" << NaiveEscape(kIdentifier) << ",\"message\":" << kMessageJson << "}";
    std::string frame = os.str();
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_BuildBroadcast_OstreamBaseline);

void BM_BuildBroadcast_ConcatBaseline(benchmark::State& state) {
  for (auto _ : state) {
    std::string id = "\"";
    for (char c : kIdentifier) {
      if (c == '"' || c == '\\') id += '\\';
      id += c;
    }
    id += '"';
    std::string frame = "{\"identifier\":" + id + ",\"message\":" + kMessageJson + "}";
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_BuildBroadcast_ConcatBaseline);

void BM_MessageJson(benchmark::State& state) {
  MessageEncoder enc;
  for (auto _ : state) {
    std::string m = enc.MessageJson(kMessageJson);
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_MessageJson);

}  // namespace
