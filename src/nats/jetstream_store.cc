// nats::JetStreamStore: history, epoch and sessions in NATS JetStream (see the header).
#include "nats/jetstream_store.h"

#include <nats/nats.h>
#include <openssl/sha.h>
#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "nats/nats_link.h"

namespace cable::nats {
namespace {

using cable::MakeError;

constexpr const char* kStreamPrefix = "_ac_";
constexpr const char* kHashedPrefix = "_ach_";
constexpr size_t kMaxPlainName = 64;
constexpr size_t kHashedReadable = 32;
constexpr int64_t kNanos = 1000000000;
constexpr char kTakenMarker = '-';
constexpr size_t kExpiryBytes = 8;
// Ranges of at least this many messages are read through an ordered consumer.
constexpr uint64_t kConsumerFromMessages = 8;

natsStatus OpenLibraryOnce() {
  static std::once_flag once;
  static natsStatus status = NATS_OK;
  std::call_once(once, [] { status = nats_Open(-1); });
  return status;
}

std::string StatusText(natsStatus status, jsErrCode code = static_cast<jsErrCode>(0)) {
  std::string text = natsStatus_GetText(status);
  const char* detail = nats_GetLastError(nullptr);
  if (detail && *detail && text != detail) text += std::string(": ") + detail;
  if (code != 0) text += " (JetStream error " + std::to_string(static_cast<int>(code)) + ")";
  return text;
}

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::string Sha256Hex(std::string_view s, size_t bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  return Hex(digest, std::min<size_t>(bytes, sizeof digest));
}

bool PlainByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

int64_t UnixNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

std::string RandomEpoch() {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz-";
  unsigned char bytes[4] = {};
  if (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t v = static_cast<uint64_t>(ts.tv_nsec) ^ static_cast<uint64_t>(ts.tv_sec) << 20;
    std::memcpy(bytes, &v, sizeof bytes);
  }
  std::string out;
  for (unsigned char b : bytes) out += kAlphabet[b & 63];
  return out;
}

void OnConnected(natsConnection*, void*) {}

// Owns a natsMsg* / jsStreamInfo* / kvEntry* for the scope.
struct MsgGuard {
  natsMsg* m = nullptr;
  ~MsgGuard() { natsMsg_Destroy(m); }
};
struct InfoGuard {
  jsStreamInfo* si = nullptr;
  ~InfoGuard() { jsStreamInfo_Destroy(si); }
};
struct EntryGuard {
  kvEntry* e = nullptr;
  ~EntryGuard() { kvEntry_Destroy(e); }
};

}  // namespace

struct JetStreamStore::Impl {
  Options options;
  natsConnection* conn = nullptr;
  jsCtx* js = nullptr;
  kvStore* epoch_kv = nullptr;
  kvStore* sessions_kv = nullptr;
  std::unordered_set<std::string> known_streams;  // JetStream streams created/updated by us

  ~Impl() { Close(); }

  void Close() {
    if (epoch_kv) kvStore_Destroy(epoch_kv);
    if (sessions_kv) kvStore_Destroy(sessions_kv);
    epoch_kv = sessions_kv = nullptr;
    if (js) jsCtx_Destroy(js);
    js = nullptr;
    if (conn) {
      natsConnection_Close(conn);
      natsConnection_Destroy(conn);
    }
    conn = nullptr;
  }

  bool Connected() const {
    return conn && natsConnection_Status(conn) == NATS_CONN_STATUS_CONNECTED;
  }

  Result<bool> CheckUp() const {
    if (!conn) return MakeError(std::string("nats: store closed"));
    if (!Connected()) return MakeError(std::string("nats: not connected (reconnecting)"));
    return Result<bool>(true);
  }

  jsOptions JsOptions() const {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = options.timeout_ms;
    return o;
  }

  // Creates the KV bucket, or binds to the existing one and brings its TTL to `ttl_s`. (libnats
  // 3.4 passes kvConfig.TTL through as the stream's MaxAge: nanoseconds.)
  Result<kvStore*> Bucket(const char* bucket, int64_t ttl_s) {
    const int64_t ttl_ns = ttl_s * kNanos;
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket;
    cfg.TTL = ttl_ns;
    cfg.History = 1;
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = options.replicas;
    kvStore* kv = nullptr;
    natsStatus s = js_CreateKeyValue(&kv, js, &cfg);
    if (s == NATS_OK) return kv;
    if (!Connected() || s == NATS_TIMEOUT) {
      return MakeError("nats: cannot create KV bucket " + std::string(bucket) + ": " +
                       StatusText(s));
    }
    // Exists with another configuration: bind to it, then update its TTL like anycable-go
    // (which recreates the bucket; updating keeps the values).
    const std::string create_error = StatusText(s);
    s = js_KeyValue(&kv, js, bucket);
    if (s != NATS_OK) {
      return MakeError("nats: cannot create KV bucket " + std::string(bucket) + ": " +
                       create_error);
    }
    const std::string stream = std::string("KV_") + bucket;
    jsOptions o = JsOptions();
    InfoGuard info;
    jsErrCode code = static_cast<jsErrCode>(0);
    s = js_GetStreamInfo(&info.si, js, stream.c_str(), &o, &code);
    if (s == NATS_OK && info.si->Config->MaxAge != ttl_ns) {
      info.si->Config->MaxAge = ttl_ns;
      // The duplicates window may not exceed MaxAge (KV streams default to 2 minutes).
      if (ttl_ns > 0 && info.si->Config->Duplicates > ttl_ns) info.si->Config->Duplicates = ttl_ns;
      jsStreamInfo* updated = nullptr;
      s = js_UpdateStream(&updated, js, info.si->Config, &o, &code);
      jsStreamInfo_Destroy(updated);
    }
    if (s != NATS_OK) {
      kvStore_Destroy(kv);
      return MakeError("nats: cannot update KV bucket " + std::string(bucket) + ": " +
                       StatusText(s, code));
    }
    return kv;
  }

  int64_t EpochTtlSeconds() const {
    return 10 * static_cast<int64_t>(std::max(options.history_ttl_s, options.sessions_ttl_s));
  }

  Result<kvStore*> EpochKv() {
    if (epoch_kv) return epoch_kv;
    auto kv = Bucket(kEpochBucket, EpochTtlSeconds());
    if (kv) epoch_kv = *kv;
    return kv;
  }

  Result<kvStore*> SessionsKv() {
    if (sessions_kv) return sessions_kv;
    auto kv = Bucket(kSessionsBucket, options.sessions_ttl_s);
    if (kv) sessions_kv = *kv;
    return kv;
  }

  // Creates the JetStream stream `name` or updates its limits (once per process, bounded cache).
  Result<bool> EnsureStream(const std::string& name) {
    if (known_streams.count(name)) return Result<bool>(true);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char* subjects[] = {name.c_str()};
    cfg.Name = name.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_LimitsPolicy;
    cfg.MaxMsgs = options.history_limit;
    cfg.MaxAge = static_cast<int64_t>(options.history_ttl_s) * kNanos;
    cfg.Storage = js_FileStorage;
    cfg.Discard = js_DiscardOld;
    cfg.Replicas = options.replicas;
    cfg.AllowDirect = true;
    jsOptions o = JsOptions();
    jsErrCode code = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    natsStatus s = js_AddStream(&si, js, &cfg, &o, &code);
    if (s != NATS_OK && code == JSStreamNameExistErr) {
      // Created by an older configuration (other limits): apply ours.
      code = static_cast<jsErrCode>(0);
      s = js_UpdateStream(&si, js, &cfg, &o, &code);
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
      return MakeError("nats: cannot create JetStream stream " + name + ": " + StatusText(s, code));
    }
    if (known_streams.size() >= kMaxKnownStreams) known_streams.clear();
    known_streams.insert(name);
    return Result<bool>(true);
  }

  // Stream state, or nullopt for an unknown stream.
  Result<std::optional<jsStreamState>> State(const std::string& name) {
    jsOptions o = JsOptions();
    jsErrCode code = static_cast<jsErrCode>(0);
    InfoGuard info;
    natsStatus s = js_GetStreamInfo(&info.si, js, name.c_str(), &o, &code);
    if (s == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
      return std::optional<jsStreamState>();
    }
    if (s != NATS_OK) {
      return MakeError("nats: cannot read JetStream stream " + name + ": " + StatusText(s, code));
    }
    jsStreamState st = info.si->State;
    st.Subjects = nullptr;
    st.Deleted = nullptr;
    st.Lost = nullptr;
    return std::optional<jsStreamState>(st);
  }

  // The messages with sequence in [from, to] that still exist, in order, appended to `out`. Short
  // ranges are read message by message (js_GetMsg); longer ones through one ephemeral ordered
  // consumer (one create request, then the messages are pushed back to back), deleted after.
  Result<bool> ReadRange(const std::string& name, uint64_t from, uint64_t to,
                         std::vector<StoredPublication>* out) {
    if (from > to) return true;
    if (to - from < kConsumerFromMessages) {
      for (uint64_t seq = from; seq <= to; ++seq) {
        auto pub = Get(name, seq);
        if (!pub) return MakeError(pub.error());
        if (pub->has_value()) out->push_back(std::move(**pub));
      }
      return true;
    }
    jsOptions o = JsOptions();
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = name.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsSubscription* sub = nullptr;
    natsStatus s = js_SubscribeSync(&sub, js, name.c_str(), &o, &so, &code);
    if (s != NATS_OK) {
      return MakeError("nats: cannot read " + name + ": " + StatusText(s, code));
    }
    struct SubGuard {
      natsSubscription* sub;
      ~SubGuard() {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
      }
    } guard{sub};
    timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    const int64_t deadline_ms = start.tv_sec * 1000 + start.tv_nsec / 1000000 + options.timeout_ms;
    while (true) {
      timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      const int64_t left = deadline_ms - (now.tv_sec * 1000 + now.tv_nsec / 1000000);
      if (left <= 0) return MakeError("nats: timed out reading " + name);
      MsgGuard msg;
      s = natsSubscription_NextMsg(&msg.m, sub, left);
      if (s != NATS_OK) return MakeError("nats: cannot read " + name + ": " + StatusText(s));
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, msg.m) != NATS_OK) continue;  // not a stream message
      const uint64_t seq = meta->Sequence.Stream;
      const int64_t ts_ns = meta->Timestamp;
      const uint64_t pending = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
      if (seq > to) break;
      out->push_back(Decode(msg.m, seq, ts_ns));
      if (seq == to || pending == 0) break;
    }
    return true;
  }

  static StoredPublication Decode(natsMsg* m, uint64_t seq, int64_t ts_ns) {
    StoredPublication pub;
    pub.offset = seq;
    pub.unix_ts = ts_ns / kNanos;
    const char* ts = nullptr;
    if (natsMsgHeader_Get(m, kTsHeader, &ts) == NATS_OK && ts) {
      char* end = nullptr;
      long long v = strtoll(ts, &end, 10);
      if (end && *end == '\0' && end != ts) pub.unix_ts = v;
    }
    pub.data.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    return pub;
  }

  // One message; nullopt when it is gone (expired or trimmed).
  Result<std::optional<StoredPublication>> Get(const std::string& name, uint64_t seq) {
    jsOptions o = JsOptions();
    jsErrCode code = static_cast<jsErrCode>(0);
    MsgGuard msg;
    natsStatus s = js_GetMsg(&msg.m, js, name.c_str(), seq, &o, &code);
    if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) {
      return std::optional<StoredPublication>();
    }
    if (s != NATS_OK) {
      return MakeError("nats: cannot read message " + std::to_string(seq) + " of " + name + ": " +
                       StatusText(s, code));
    }
    return std::optional<StoredPublication>(Decode(msg.m, seq, natsMsg_GetTime(msg.m)));
  }
};

JetStreamStore::JetStreamStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JetStreamStore::~JetStreamStore() { Close(); }

void JetStreamStore::Close() {
  if (impl_) impl_->Close();
}

bool JetStreamStore::connected() const { return impl_ && impl_->Connected(); }

std::string JetStreamStore::JetStreamName(std::string_view stream) {
  if (!stream.empty() && stream.size() <= kMaxPlainName &&
      std::all_of(stream.begin(), stream.end(), PlainByte)) {
    return kStreamPrefix + std::string(stream);
  }
  std::string out = kHashedPrefix;
  for (size_t i = 0; i < stream.size() && i < kHashedReadable; ++i) {
    out += PlainByte(stream[i]) ? stream[i] : '_';
  }
  return out + "_" + Sha256Hex(stream, 16);
}

std::string JetStreamStore::SessionKey(std::string_view sid) {
  // KV keys: [-/_=.a-zA-Z0-9]+, no leading/trailing '.'; we keep to [A-Za-z0-9_-], <= 128.
  if (!sid.empty() && sid.size() <= 128 && std::all_of(sid.begin(), sid.end(), PlainByte) &&
      sid.rfind("h_", 0) != 0) {
    return std::string(sid);
  }
  return "h_" + Sha256Hex(sid, 32);
}

Result<std::unique_ptr<JetStreamStore>> JetStreamStore::Open(const Options& options) {
  if (options.history_limit < 1) return MakeError(std::string("nats store: history_limit < 1"));
  if (options.history_ttl_s < 1) return MakeError(std::string("nats store: history_ttl < 1"));
  if (options.sessions_ttl_s < 0) return MakeError(std::string("nats store: sessions_ttl < 0"));
  if (options.replicas < 1 || options.replicas > 5) {
    return MakeError(std::string("nats store: replicas must be 1..5"));
  }
  if (options.timeout_ms < 1) return MakeError(std::string("nats store: timeout_ms < 1"));
  auto servers = ParseServers(options.servers);
  if (!servers) return MakeError("nats store: " + servers.error());
  if (natsStatus s = OpenLibraryOnce(); s != NATS_OK) {
    return MakeError("nats: cannot initialize the client library: " + StatusText(s));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::vector<const char*> urls;
  for (const auto& url : servers->servers) urls.push_back(url.c_str());
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(opts, options.dont_randomize);
  if (s == NATS_OK) s = natsOptions_SetName(opts, options.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, options.timeout_ms);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK) s = natsOptions_SetReconnectJitter(opts, 100, 1000);
  // Requests fail while disconnected (CheckUp) rather than waiting in the reconnect buffer.
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, 1);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts, 2);
  // With a connected callback the first connect goes on in the background (without one libnats
  // retries inside Connect, forever); we poll the status instead, so the callback does nothing.
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(opts, true, OnConnected, nullptr);
  if (s != NATS_OK) {
    std::string error = "nats: bad options: " + StatusText(s);
    natsOptions_Destroy(opts);
    return MakeError(std::move(error));
  }
  s = natsConnection_Connect(&impl->conn, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    impl->conn = nullptr;
    return MakeError("nats: cannot connect: " + StatusText(s));
  }
  jsOptions jo = impl->JsOptions();
  s = natsConnection_JetStream(&impl->js, impl->conn, &jo);
  if (s != NATS_OK) return MakeError("nats: no JetStream context: " + StatusText(s));
  return std::unique_ptr<JetStreamStore>(new JetStreamStore(std::move(impl)));
}

Result<std::string> JetStreamStore::Epoch() {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  auto kv = im.EpochKv();
  if (!kv) return MakeError(kv.error());
  // Read first (the common case); create when absent; on a lost race read the winner's.
  for (int attempt = 0; attempt < 3; ++attempt) {
    EntryGuard entry;
    natsStatus s = kvStore_Get(&entry.e, *kv, kEpochKey);
    if (s == NATS_OK && kvEntry_ValueLen(entry.e) > 0) {
      std::string epoch(static_cast<const char*>(kvEntry_Value(entry.e)),
                        static_cast<size_t>(kvEntry_ValueLen(entry.e)));
      // The bucket's TTL (anycable-go's) would drop the epoch some time after it was written,
      // and the next node to ask would start a new one: rewrite the same value (compare-and-set,
      // so a concurrent change wins) once it is past half its TTL, so it is kept for as long as
      // nodes keep asking. Best effort: a failure here changes nothing.
      timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      const int64_t age_ns =
          static_cast<int64_t>(now.tv_sec) * kNanos + now.tv_nsec - kvEntry_Created(entry.e);
      if (age_ns > im.EpochTtlSeconds() * kNanos / 2) {
        uint64_t rev = 0;
        (void)kvStore_Update(&rev, *kv, kEpochKey, epoch.data(), static_cast<int>(epoch.size()),
                             kvEntry_Revision(entry.e));
      }
      return epoch;
    }
    if (s != NATS_OK && s != NATS_NOT_FOUND) {
      return MakeError("nats: cannot read the epoch: " + StatusText(s));
    }
    const std::string fresh = RandomEpoch();
    uint64_t rev = 0;
    s = kvStore_Create(&rev, *kv, kEpochKey, fresh.data(), static_cast<int>(fresh.size()));
    if (s == NATS_OK) return fresh;
    if (!im.Connected() || s == NATS_TIMEOUT) {
      return MakeError("nats: cannot create the epoch: " + StatusText(s));
    }
  }
  return MakeError(std::string("nats: the epoch keeps changing"));
}

Result<uint64_t> JetStreamStore::Append(const std::string& stream, std::string_view data,
                                        int64_t unix_ts) {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  const std::string name = JetStreamName(stream);
  const std::string ts = std::to_string(unix_ts);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (auto ok = im.EnsureStream(name); !ok) return MakeError(ok.error());
    MsgGuard msg;
    natsStatus s =
        natsMsg_Create(&msg.m, name.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
    if (s == NATS_OK) s = natsMsgHeader_Set(msg.m, kTsHeader, ts.c_str());
    if (s != NATS_OK) return MakeError("nats: cannot build a message: " + StatusText(s));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = im.options.timeout_ms;
    po.ExpectStream = name.c_str();
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&ack, im.js, msg.m, &po, &code);
    if (s == NATS_OK) {
      const uint64_t seq = ack->Sequence;
      jsPubAck_Destroy(ack);
      return seq;
    }
    jsPubAck_Destroy(ack);
    if (s == NATS_NO_RESPONDERS && attempt == 0) {
      // The stream was deleted (Sweep on some node) since we created it: create it again.
      im.known_streams.erase(name);
      continue;
    }
    return MakeError("nats: cannot append to " + name + ": " + StatusText(s, code));
  }
  return MakeError("nats: cannot append to " + name + ": stream keeps disappearing");
}

Result<std::vector<StoredPublication>> JetStreamStore::ReadFrom(const std::string& stream,
                                                                uint64_t after_offset) {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  const std::string name = JetStreamName(stream);
  auto state = im.State(name);
  if (!state) return MakeError(state.error());
  if (!state->has_value()) return MakeError(std::string("refused: unknown stream"));
  const jsStreamState& st = **state;
  if (st.Msgs == 0) return MakeError(std::string("refused: empty stream"));
  if (after_offset < st.FirstSeq || after_offset > st.LastSeq) {
    return MakeError("refused: offset " + std::to_string(after_offset) + " outside [" +
                     std::to_string(st.FirstSeq) + ", " + std::to_string(st.LastSeq) + "]");
  }
  std::vector<StoredPublication> out;
  const uint64_t limit = static_cast<uint64_t>(im.options.history_limit);
  if (st.LastSeq - after_offset > limit) {
    return MakeError(std::string("refused: more than history_limit messages to read"));
  }
  out.reserve(static_cast<size_t>(st.LastSeq - after_offset));
  if (auto read = im.ReadRange(name, after_offset + 1, st.LastSeq, &out); !read) {
    return MakeError(read.error());
  }
  // Trimmed while we read: the range is no longer complete.
  if (out.size() != st.LastSeq - after_offset ||
      (!out.empty() && out[0].offset != after_offset + 1)) {
    return MakeError("refused: offset " + std::to_string(after_offset + 1) +
                     " expired while reading");
  }
  return out;
}

Result<std::vector<uint64_t>> JetStreamStore::Append(const std::vector<AppendEntry>& batch,
                                                     int64_t unix_ts) {
  std::vector<uint64_t> offsets;
  offsets.reserve(batch.size());
  for (const AppendEntry& e : batch) {
    auto offset = Append(e.stream, e.data, unix_ts);
    if (!offset) return MakeError(offset.error());
    offsets.push_back(*offset);
  }
  return offsets;
}

Result<std::vector<StoredPublication>> JetStreamStore::ReadRetained(const std::string& stream,
                                                                    uint64_t from_offset) {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  const std::string name = JetStreamName(stream);
  auto state = im.State(name);
  if (!state) return MakeError(state.error());
  std::vector<StoredPublication> out;
  if (!state->has_value() || (*state)->Msgs == 0) return out;
  const jsStreamState& st = **state;
  const uint64_t limit = static_cast<uint64_t>(im.options.history_limit);
  uint64_t first = std::max(from_offset, st.FirstSeq);
  if (st.LastSeq >= limit && st.LastSeq - limit + 1 > first) first = st.LastSeq - limit + 1;
  if (auto read = im.ReadRange(name, first, st.LastSeq, &out); !read) {
    return MakeError(read.error());
  }
  return out;
}

Result<std::vector<StoredPublication>> JetStreamStore::ReadSince(const std::string& stream,
                                                                 int64_t since_unix_ts) {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  const std::string name = JetStreamName(stream);
  auto state = im.State(name);
  if (!state) return MakeError(state.error());
  std::vector<StoredPublication> out;
  if (!state->has_value() || (*state)->Msgs == 0) return out;
  const jsStreamState& st = **state;
  const uint64_t limit = static_cast<uint64_t>(im.options.history_limit);
  uint64_t first = st.FirstSeq;
  if (st.LastSeq >= limit && st.LastSeq - limit + 1 > first) first = st.LastSeq - limit + 1;
  if (auto read = im.ReadRange(name, first, st.LastSeq, &out); !read) {
    return MakeError(read.error());
  }
  std::erase_if(out, [&](const StoredPublication& p) { return p.unix_ts < since_unix_ts; });
  return out;
}

Result<bool> JetStreamStore::PutSession(const std::string& sid, std::string_view blob, int ttl_s) {
  Impl& im = *impl_;
  if (im.options.sessions_ttl_s == 0 || ttl_s <= 0) return Result<bool>(true);
  if (auto up = im.CheckUp(); !up) return up;
  auto kv = im.SessionsKv();
  if (!kv) return MakeError(kv.error());
  const int64_t expiry = UnixNow() + std::min(ttl_s, im.options.sessions_ttl_s);
  std::string value(kExpiryBytes, '\0');
  for (size_t i = 0; i < kExpiryBytes; ++i) {
    value[i] =
        static_cast<char>((static_cast<uint64_t>(expiry) >> (8 * (kExpiryBytes - 1 - i))) & 0xff);
  }
  value.append(blob);
  uint64_t rev = 0;
  const std::string key = SessionKey(sid);
  natsStatus s = kvStore_Put(&rev, *kv, key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return MakeError("nats: cannot store the session: " + StatusText(s));
  return Result<bool>(true);
}

Result<std::optional<std::string>> JetStreamStore::TakeSession(const std::string& sid) {
  Impl& im = *impl_;
  if (im.options.sessions_ttl_s == 0) return std::optional<std::string>();
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  auto kv = im.SessionsKv();
  if (!kv) return MakeError(kv.error());
  const std::string key = SessionKey(sid);
  EntryGuard entry;
  natsStatus s = kvStore_Get(&entry.e, *kv, key.c_str());
  if (s == NATS_NOT_FOUND) return std::optional<std::string>();
  if (s != NATS_OK) return MakeError("nats: cannot read the session: " + StatusText(s));
  const auto* p = static_cast<const unsigned char*>(kvEntry_Value(entry.e));
  const size_t len = static_cast<size_t>(kvEntry_ValueLen(entry.e));
  if (len < kExpiryBytes) return std::optional<std::string>();  // taken (or not ours)
  uint64_t expiry = 0;
  for (size_t i = 0; i < kExpiryBytes; ++i) expiry = expiry << 8 | p[i];
  if (static_cast<int64_t>(expiry) < UnixNow()) return std::optional<std::string>();
  // Single use across nodes: only the taker whose compare-and-set wins gets the blob.
  uint64_t rev = 0;
  const char marker = kTakenMarker;
  s = kvStore_Update(&rev, *kv, key.c_str(), &marker, 1, kvEntry_Revision(entry.e));
  if (s != NATS_OK) {
    if (!im.Connected() || s == NATS_TIMEOUT) {
      return MakeError("nats: cannot take the session: " + StatusText(s));
    }
    return std::optional<std::string>();  // someone else took (or replaced) it first
  }
  return std::optional<std::string>(
      std::string(reinterpret_cast<const char*>(p) + kExpiryBytes, len - kExpiryBytes));
}

Result<size_t> JetStreamStore::Sweep() {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  jsOptions o = im.JsOptions();
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfoList* list = nullptr;
  natsStatus s = js_Streams(&list, im.js, &o, &code);
  if (s == NATS_NOT_FOUND) return size_t{0};
  if (s != NATS_OK) return MakeError("nats: cannot list JetStream streams: " + StatusText(s, code));
  const int64_t idle_ns = 10 * static_cast<int64_t>(im.options.history_ttl_s) * kNanos;
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  const int64_t now_ns = static_cast<int64_t>(now.tv_sec) * kNanos + now.tv_nsec;
  size_t deleted = 0;
  std::string error;
  for (int i = 0; i < list->Count; ++i) {
    const jsStreamInfo* si = list->List[i];
    if (!si || !si->Config || !si->Config->Name) continue;
    const std::string name = si->Config->Name;
    if (name.rfind(kStreamPrefix, 0) != 0 && name.rfind(kHashedPrefix, 0) != 0) continue;
    if (si->State.Msgs != 0 || now_ns - si->State.LastTime < idle_ns) continue;
    jsErrCode dcode = static_cast<jsErrCode>(0);
    natsStatus ds = js_DeleteStream(im.js, name.c_str(), &o, &dcode);
    if (ds == NATS_OK) {
      ++deleted;
      im.known_streams.erase(name);
    } else if (error.empty()) {
      error = "nats: cannot delete JetStream stream " + name + ": " + StatusText(ds, dcode);
    }
  }
  jsStreamInfoList_Destroy(list);
  if (!error.empty()) return MakeError(std::move(error));
  return deleted;
}

}  // namespace cable::nats
