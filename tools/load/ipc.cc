#include "ipc.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cable::load {

const char* FailureName(Failure f) {
  switch (f) {
    case Failure::kSocket:
      return "socket";
    case Failure::kConnect:
      return "connect";
    case Failure::kUpgrade:
      return "upgrade";
    case Failure::kProtocol:
      return "protocol";
    case Failure::kRejected:
      return "rejected";
    case Failure::kClosed:
      return "closed";
    case Failure::kTimeout:
      return "timeout";
    case Failure::kCount:
      break;
  }
  return "?";
}

void AppendMessage(std::string* out, MsgType type, std::string_view payload) {
  uint32_t head[2] = {static_cast<uint32_t>(type), static_cast<uint32_t>(payload.size())};
  out->append(reinterpret_cast<const char*>(head), sizeof(head));
  out->append(payload);
}

std::string EncodeCounters(const Counters& c) {
  return std::string(reinterpret_cast<const char*>(&c), sizeof(c));
}

bool DecodeCounters(std::string_view in, Counters* c) {
  if (in.size() != sizeof(Counters)) return false;
  std::memcpy(static_cast<void*>(c), in.data(), sizeof(Counters));
  return true;
}

std::string EncodeResult(const WorkerResult& r) {
  std::string out = EncodeCounters(r.counters);
  r.handshake.AppendTo(&out);
  r.latency.AppendTo(&out);
  return out;
}

bool DecodeResult(std::string_view in, WorkerResult* r) {
  if (in.size() < sizeof(Counters)) return false;
  if (!DecodeCounters(in.substr(0, sizeof(Counters)), &r->counters)) return false;
  in.remove_prefix(sizeof(Counters));
  return r->handshake.ReadFrom(&in) && r->latency.ReadFrom(&in) && in.empty();
}

void MessageReader::Feed(std::string_view data) {
  buf_.erase(0, pos_);
  pos_ = 0;
  buf_.append(data);
}

bool MessageReader::Next(MsgType* type, std::string_view* payload) {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  if (buf_.size() - pos_ < 8) return false;
  uint32_t head[2];
  std::memcpy(head, buf_.data() + pos_, sizeof(head));
  if (buf_.size() - pos_ - 8 < head[1]) return false;
  *type = static_cast<MsgType>(head[0]);
  *payload = std::string_view(buf_.data() + pos_ + 8, head[1]);
  pos_ += 8 + head[1];
  return true;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace cable::load
