// upgrade: the control channel's framing (SEQPACKET + SCM_RIGHTS) and the connection record's
// binary encoding (little-endian lengths; see upgrade.h for the protocol).
#include "upgrade/upgrade.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cable::upgrade {
namespace {

constexpr size_t kMaxFds = 64;

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void U64(uint64_t v) {
    U32(static_cast<uint32_t>(v));
    U32(static_cast<uint32_t>(v >> 32));
  }
  void Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void Map(const std::map<std::string, std::string>& m) {
    U32(static_cast<uint32_t>(m.size()));
    for (const auto& [k, v] : m) {
      Str(k);
      Str(v);
    }
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  bool ok() const { return ok_; }
  uint8_t U8() {
    if (!Need(1)) return 0;
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(in_[pos_++])) << (8 * i);
    return v;
  }
  uint64_t U64() {
    uint64_t lo = U32();
    return lo | (static_cast<uint64_t>(U32()) << 32);
  }
  std::string Str() {
    uint32_t n = U32();
    if (!Need(n)) return {};
    std::string s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  // A count of entries that each take at least `min_bytes`: bounded by what is left.
  uint32_t Count(size_t min_bytes) {
    uint32_t n = U32();
    if (ok_ && static_cast<size_t>(n) * min_bytes > in_.size() - pos_) ok_ = false;
    return ok_ ? n : 0;
  }
  void Map(std::map<std::string, std::string>* m) {
    uint32_t n = Count(8);
    for (uint32_t i = 0; i < n && ok_; ++i) {
      std::string k = Str();
      (*m)[k] = Str();
    }
  }
  bool AtEnd() const { return ok_ && pos_ == in_.size(); }
  size_t left() const { return ok_ ? in_.size() - pos_ : 0; }

 private:
  bool Need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) ok_ = false;
    return ok_;
  }
  const std::string& in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Optional sections of a ConnRecord (tags 40–49, the session transports'); kept apart from the
// fixed part so that other sections can be added beside them.
void EncodeSessionSections(const ConnRecord& r, Writer* w) {
  if (r.presence_joined) {
    Writer section;
    section.U32(static_cast<uint32_t>(r.presence.size()));
    for (const auto& p : r.presence) {
      section.Str(p.stream);
      section.Str(p.id);
      section.Str(p.info_json);
    }
    w->U8(static_cast<uint8_t>(ConnTag::kPresence));
    w->Str(section.out());
  }
  if (r.sse != ConnRecord::Sse::kNone) {
    Writer section;
    section.U8(static_cast<uint8_t>(r.sse));
    section.U8(r.sse_raw ? 1 : 0);
    w->U8(static_cast<uint8_t>(ConnTag::kSse));
    w->Str(section.out());
  }
  if (r.tls) {
    Writer section;
    section.U8(r.tls_suite);
    section.Str(r.tls_rx_secret);
    section.U64(r.tls_rx_seq);
    section.Str(r.tls_tx_secret);
    section.U64(r.tls_tx_seq);
    w->U8(static_cast<uint8_t>(ConnTag::kTls));
    w->Str(section.out());
  }
  if (r.poll) {
    Writer section;
    section.Str(r.poll_id);
    section.U32(r.poll_expires_in_ms);
    section.Str(r.poll_queued);
    w->U8(static_cast<uint8_t>(ConnTag::kPoll));
    w->Str(section.out());
  }
}

// One section's body; false if malformed. Unknown tags are skipped (true).
bool DecodeSessionSection(uint8_t tag, const std::string& body, ConnRecord* r) {
  Reader rd(body);
  switch (static_cast<ConnTag>(tag)) {
    case ConnTag::kPresence: {
      r->presence_joined = true;
      uint32_t n = rd.Count(12);
      for (uint32_t i = 0; i < n && rd.ok(); ++i) {
        ConnRecord::PresenceHeld p;
        p.stream = rd.Str();
        p.id = rd.Str();
        p.info_json = rd.Str();
        r->presence.push_back(std::move(p));
      }
      return rd.AtEnd();
    }
    case ConnTag::kSse: {
      uint8_t kind = rd.U8();
      r->sse_raw = rd.U8() != 0;
      if (kind != static_cast<uint8_t>(ConnRecord::Sse::kGet) &&
          kind != static_cast<uint8_t>(ConnRecord::Sse::kPost)) {
        return false;
      }
      r->sse = static_cast<ConnRecord::Sse>(kind);
      return rd.AtEnd();
    }
    case ConnTag::kTls: {
      r->tls = true;
      r->tls_suite = rd.U8();
      r->tls_rx_secret = rd.Str();
      r->tls_rx_seq = rd.U64();
      r->tls_tx_secret = rd.Str();
      r->tls_tx_seq = rd.U64();
      // The secrets are checked against the suite by the importer (tls::Session).
      return rd.AtEnd() && r->tls_rx_secret.size() <= 64 && r->tls_tx_secret.size() <= 64;
    }
    case ConnTag::kPoll: {
      r->poll = true;
      r->poll_id = rd.Str();
      r->poll_expires_in_ms = rd.U32();
      r->poll_queued = rd.Str();
      return rd.AtEnd() && !r->poll_id.empty();
    }
  }
  return true;
}

}  // namespace

bool SendPacket(int sock, const Packet& p) {
  if (p.fds.size() > kMaxFds) {
    errno = EINVAL;
    return false;
  }
  std::string body(1, static_cast<char>(p.type));
  body += p.bytes;
  iovec iov{body.data(), body.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!p.fds.empty()) {
    size_t len = sizeof(int) * p.fds.size();
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(len);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(len);
    std::memcpy(CMSG_DATA(cm), p.fds.data(), len);
  }
  for (;;) {
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n) == body.size();
    if (errno != EINTR) return false;
  }
}

int RecvPacket(int sock, Packet* p, int timeout_ms) {
  pollfd pfd{sock, POLLIN, 0};
  for (;;) {
    int r = poll(&pfd, 1, timeout_ms);
    if (r > 0) break;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
  std::string buf(kMaxRecord + 64, '\0');
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return -1;
  p->fds.clear();
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(cm);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      p->fds.push_back(fd);
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    for (int fd : p->fds) close(fd);
    p->fds.clear();
    return -1;
  }
  p->type = static_cast<Type>(buf[0]);
  p->bytes.assign(buf.data() + 1, static_cast<size_t>(n) - 1);
  return 1;
}

std::string Encode(const ConnRecord& r) {
  Writer w;
  w.U64(r.token);
  w.U32(r.worker);
  w.Str(r.sid);
  w.Str(r.identifiers);
  w.Str(r.url);
  w.U32(static_cast<uint32_t>(r.headers.size()));
  for (const auto& [k, v] : r.headers) {
    w.Str(k);
    w.Str(v);
  }
  w.Map(r.cstate);
  w.U32(static_cast<uint32_t>(r.subs.size()));
  for (const auto& s : r.subs) {
    w.Str(s.identifier);
    w.U32(static_cast<uint32_t>(s.streams.size()));
    for (const auto& st : s.streams) w.Str(st);
    w.U8(static_cast<uint8_t>((s.builtin ? 1 : 0) | (s.has_istate ? 2 : 0)));
    w.Map(s.istate);
  }
  w.U8(static_cast<uint8_t>((r.ext ? 1 : 0) | (r.deflate ? 2 : 0) | (r.authenticated ? 4 : 0) |
                            (r.needs_disconnect_rpc ? 8 : 0) | (r.rpc_free_auth ? 16 : 0) |
                            (r.used_rpc ? 32 : 0) | (r.restorable ? 64 : 0)));
  w.U8(r.ping_precision);
  w.U32(r.ping_period);
  w.U8(static_cast<uint8_t>((r.http ? 1 : 0) | ((r.listener & 3) << 1)));
  EncodeSessionSections(r, &w);
  return std::move(w.out());
}

bool Decode(const std::string& bytes, ConnRecord* r) {
  Reader rd(bytes);
  r->token = rd.U64();
  r->worker = rd.U32();
  r->sid = rd.Str();
  r->identifiers = rd.Str();
  r->url = rd.Str();
  uint32_t nh = rd.Count(8);
  for (uint32_t i = 0; i < nh && rd.ok(); ++i) {
    std::string k = rd.Str();
    r->headers.emplace_back(std::move(k), rd.Str());
  }
  rd.Map(&r->cstate);
  uint32_t ns = rd.Count(10);
  for (uint32_t i = 0; i < ns && rd.ok(); ++i) {
    SubRecord s;
    s.identifier = rd.Str();
    uint32_t nst = rd.Count(4);
    for (uint32_t j = 0; j < nst && rd.ok(); ++j) s.streams.push_back(rd.Str());
    uint8_t f = rd.U8();
    s.builtin = f & 1;
    s.has_istate = f & 2;
    rd.Map(&s.istate);
    r->subs.push_back(std::move(s));
  }
  uint8_t f = rd.U8();
  r->ext = f & 1;
  r->deflate = f & 2;
  r->authenticated = f & 4;
  r->needs_disconnect_rpc = f & 8;
  r->rpc_free_auth = f & 16;
  r->used_rpc = f & 32;
  r->restorable = f & 64;
  r->ping_precision = rd.U8();
  r->ping_period = rd.U32();
  uint8_t kind = rd.U8();
  r->http = kind & 1;
  r->listener = static_cast<uint8_t>((kind >> 1) & 3);
  if (r->listener > 2) return false;
  // Optional sections up to the end: {tag, length-prefixed body}; unknown tags are skipped.
  while (rd.ok() && rd.left() > 0) {
    uint8_t tag = rd.U8();
    std::string body = rd.Str();
    if (!rd.ok() || !DecodeSessionSection(tag, body, r)) return false;
  }
  return rd.AtEnd();
}

std::string EncodeStrings(const std::vector<std::string>& v) {
  Writer w;
  w.U32(static_cast<uint32_t>(v.size()));
  for (const auto& s : v) w.Str(s);
  return std::move(w.out());
}

bool DecodeStrings(const std::string& bytes, std::vector<std::string>* v) {
  Reader rd(bytes);
  uint32_t n = rd.Count(4);
  v->clear();
  for (uint32_t i = 0; i < n && rd.ok(); ++i) v->push_back(rd.Str());
  return rd.AtEnd();
}

std::string EncodeU64(uint64_t v) {
  Writer w;
  w.U64(v);
  return std::move(w.out());
}

uint64_t DecodeU64(const std::string& bytes) {
  Reader rd(bytes);
  uint64_t v = rd.U64();
  return rd.ok() ? v : 0;
}

}  // namespace cable::upgrade
