// nats::JetStreamStore: history, epoch and sessions in NATS JetStream (see the header).
#include "nats/jetstream_store.h"

#include <nats/nats.h>
#include <openssl/sha.h>
#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <map>
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
  kvStore* presence_sessions_kv = nullptr;
  kvStore* presence_streams_kv = nullptr;
  std::unordered_set<std::string> known_streams;  // JetStream streams created/updated by us

  ~Impl() { Close(); }

  void Close() {
    if (epoch_kv) kvStore_Destroy(epoch_kv);
    if (sessions_kv) kvStore_Destroy(sessions_kv);
    if (presence_sessions_kv) kvStore_Destroy(presence_sessions_kv);
    if (presence_streams_kv) kvStore_Destroy(presence_streams_kv);
    epoch_kv = sessions_kv = presence_sessions_kv = presence_streams_kv = nullptr;
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

  Result<kvStore*> PresenceSessionsKv() {
    if (presence_sessions_kv) return presence_sessions_kv;
    auto kv = Bucket(kPresenceSessionsBucket, 0);
    if (kv) presence_sessions_kv = *kv;
    return kv;
  }

  Result<kvStore*> PresenceStreamsKv() {
    if (presence_streams_kv) return presence_streams_kv;
    auto kv = Bucket(kPresenceStreamsBucket, 0);
    if (kv) presence_streams_kv = *kv;
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
  // Delete markers of ended presence sessions/streams (older than 30 minutes, libnats' default).
  for (kvStore* kv : {im.presence_sessions_kv, im.presence_streams_kv}) {
    if (!kv) continue;
    kvPurgeOptions po;
    kvPurgeOptions_Init(&po);
    po.Timeout = im.options.timeout_ms;
    if (natsStatus ps = kvStore_PurgeDeletes(kv, &po); ps != NATS_OK && error.empty()) {
      error = "nats: cannot purge presence delete markers: " + StatusText(ps);
    }
  }
  if (!error.empty()) return MakeError(std::move(error));
  return deleted;
}

// ---------------------------------------------------------------------------------------------
// Presence (see the layout in the header)

namespace {

// Values are sequences of length-prefixed fields ("<decimal length>:<bytes>"): binary-safe for
// any stream name, id or info.
void PutField(std::string* out, std::string_view field) {
  *out += std::to_string(field.size());
  *out += ':';
  out->append(field);
}
void PutInt(std::string* out, int64_t v) { PutField(out, std::to_string(v)); }

struct FieldReader {
  std::string_view in;
  bool Next(std::string_view* field) {
    const size_t colon = in.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 10) return false;
    uint64_t n = 0;
    for (size_t i = 0; i < colon; ++i) {
      if (in[i] < '0' || in[i] > '9') return false;
      n = n * 10 + static_cast<uint64_t>(in[i] - '0');
    }
    if (in.size() - colon - 1 < n) return false;
    *field = in.substr(colon + 1, n);
    in.remove_prefix(colon + 1 + n);
    return true;
  }
  bool NextInt(int64_t* v) {
    std::string_view f;
    if (!Next(&f) || f.empty() || f.size() > 19) return false;
    int64_t out = 0;
    bool negative = f[0] == '-';
    for (size_t i = negative ? 1 : 0; i < f.size(); ++i) {
      if (f[i] < '0' || f[i] > '9') return false;
      out = out * 10 + (f[i] - '0');
    }
    *v = negative ? -out : out;
    return true;
  }
  bool NextString(std::string* s) {
    std::string_view f;
    if (!Next(&f)) return false;
    s->assign(f);
    return true;
  }
};

constexpr char kSessionLive = 'L';
constexpr char kSessionClaimed = 'C';  // by a sweeping node
constexpr char kSessionMoving = 'M';   // by a restore

struct PresenceSession {
  char state = kSessionLive;
  std::string sid;
  int64_t expires_at = 0;
  std::vector<std::string> streams;

  std::string Encode() const {
    std::string out;
    PutField(&out, std::string_view(&state, 1));
    PutField(&out, sid);
    PutInt(&out, expires_at);
    PutInt(&out, static_cast<int64_t>(streams.size()));
    for (const auto& stream : streams) PutField(&out, stream);
    return out;
  }
  bool Decode(std::string_view value) {
    FieldReader r{value};
    std::string_view st;
    int64_t n = 0;
    if (!r.Next(&st) || st.size() != 1 || !r.NextString(&sid) || !r.NextInt(&expires_at) ||
        !r.NextInt(&n) || n < 0) {
      return false;
    }
    state = st[0];
    streams.clear();
    for (int64_t i = 0; i < n; ++i) {
      std::string stream;
      if (!r.NextString(&stream)) return false;
      streams.push_back(std::move(stream));
    }
    return true;
  }
};

struct PresenceHolders {
  std::string info;
  std::vector<std::string> sids;
};
// A stream's records by id (ordered, as PresenceInfo lists them).
using PresenceRecords = std::map<std::string, PresenceHolders>;

std::string EncodeRecords(const PresenceRecords& records) {
  std::string out;
  PutInt(&out, static_cast<int64_t>(records.size()));
  for (const auto& [id, holders] : records) {
    PutField(&out, id);
    PutField(&out, holders.info);
    PutInt(&out, static_cast<int64_t>(holders.sids.size()));
    for (const auto& sid : holders.sids) PutField(&out, sid);
  }
  return out;
}

bool DecodeRecords(std::string_view value, PresenceRecords* records) {
  records->clear();
  FieldReader r{value};
  int64_t n = 0;
  if (!r.NextInt(&n) || n < 0) return false;
  for (int64_t i = 0; i < n; ++i) {
    std::string id;
    PresenceHolders holders;
    int64_t k = 0;
    if (!r.NextString(&id) || !r.NextString(&holders.info) || !r.NextInt(&k) || k < 0) {
      return false;
    }
    for (int64_t j = 0; j < k; ++j) {
      std::string sid;
      if (!r.NextString(&sid)) return false;
      holders.sids.push_back(std::move(sid));
    }
    (*records)[std::move(id)] = std::move(holders);
  }
  return true;
}

// The id `sid` holds in `records`, or nullptr.
const std::string* HeldBy(const PresenceRecords& records, const std::string& sid) {
  for (const auto& [id, holders] : records) {
    if (std::find(holders.sids.begin(), holders.sids.end(), sid) != holders.sids.end()) return &id;
  }
  return nullptr;
}

// Removes `sid` from `records`; a leave event when it was its id's last holder.
bool DropHolder(PresenceRecords* records, const std::string& stream, const std::string& sid,
                std::vector<hub::PresenceEvent>* events) {
  for (auto it = records->begin(); it != records->end(); ++it) {
    auto& sids = it->second.sids;
    auto at = std::find(sids.begin(), sids.end(), sid);
    if (at == sids.end()) continue;
    sids.erase(at);
    if (sids.empty()) {
      events->push_back({stream, "leave", it->first, ""});
      records->erase(it);
    }
    return true;
  }
  return false;
}

// Backs off a little after a lost compare-and-set, more with every attempt (bounded: at most a
// few ms), so contending nodes do not retry in lockstep.
void BackOff(int attempt) {
  if (attempt < 2) return;
  unsigned char jitter = 0;
  (void)getrandom(&jitter, 1, GRND_NONBLOCK);
  timespec ts{0, static_cast<long>((std::min(attempt, 8) * 200 + jitter * 4) * 1000)};
  nanosleep(&ts, nullptr);
}

}  // namespace

// One KV value with the revision it was read at (0 = absent).
struct Versioned {
  std::string value;
  uint64_t revision = 0;
};

namespace {

bool TransportError(natsStatus s, bool connected) {
  return !connected || s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED ||
         s == NATS_CONNECTION_DISCONNECTED || s == NATS_NO_RESPONDERS;
}

Result<Versioned> ReadKey(kvStore* kv, const std::string& key) {
  EntryGuard entry;
  natsStatus s = kvStore_Get(&entry.e, kv, key.c_str());
  Versioned out;
  if (s == NATS_NOT_FOUND) return out;
  if (s != NATS_OK) {
    return MakeError("nats: cannot read presence key " + key + ": " + StatusText(s));
  }
  out.value.assign(static_cast<const char*>(kvEntry_Value(entry.e)),
                   static_cast<size_t>(kvEntry_ValueLen(entry.e)));
  out.revision = kvEntry_Revision(entry.e);
  return out;
}

}  // namespace

// Presence steps over the store's connection and buckets (a friend of JetStreamStore).
struct PresenceOps {
  JetStreamStore::Impl& im;
  const JetStreamStore::Options& options;
  kvStore* sessions;
  kvStore* streams;

  Result<Versioned> Read(kvStore* kv, const std::string& key) { return ReadKey(kv, key); }

  // Writes `value` if the key is still at `revision` (0: absent). The new revision, or 0 when
  // another writer came first.
  Result<uint64_t> Write(kvStore* kv, const std::string& key, const std::string& value,
                         uint64_t revision) {
    uint64_t rev = 0;
    natsStatus s = revision == 0 ? kvStore_Create(&rev, kv, key.c_str(), value.data(),
                                                  static_cast<int>(value.size()))
                                 : kvStore_Update(&rev, kv, key.c_str(), value.data(),
                                                  static_cast<int>(value.size()), revision);
    if (s == NATS_OK) return rev;
    if (TransportError(s, im.Connected())) {
      return MakeError("nats: cannot write presence key " + key + ": " + StatusText(s));
    }
    return uint64_t{0};
  }

  // Deletes the key if it is still at `revision` (a KV delete marker published with
  // Nats-Expected-Last-Subject-Sequence). False when another writer came first.
  Result<bool> Delete(const char* bucket, const std::string& key, uint64_t revision) {
    const std::string subject = std::string("$KV.") + bucket + "." + key;
    MsgGuard msg;
    natsStatus s = natsMsg_Create(&msg.m, subject.c_str(), nullptr, nullptr, 0);
    if (s == NATS_OK) s = natsMsgHeader_Set(msg.m, "KV-Operation", "DEL");
    if (s != NATS_OK) return MakeError("nats: cannot build a message: " + StatusText(s));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = options.timeout_ms;
    po.ExpectLastSubjectSeq = revision;
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&ack, im.js, msg.m, &po, &code);
    jsPubAck_Destroy(ack);
    if (s == NATS_OK) return true;
    if (TransportError(s, im.Connected())) {
      return MakeError("nats: cannot delete presence key " + key + ": " + StatusText(s, code));
    }
    return false;
  }

  size_t MaxValue() const {
    const int64_t max_payload = natsConnection_GetMaxPayload(im.conn);
    // Room for the KV subject and headers.
    return max_payload > 4096 ? static_cast<size_t>(max_payload - 1024) : 1024;
  }

  // Read-modify-write of a stream's records: `change` edits them (returns false to write
  // nothing); written (or deleted when empty) by compare-and-set, retried on conflicts. The
  // events `change` produced are kept only from the attempt that was written.
  template <typename Change>
  Result<bool> UpdateRecords(const std::string& stream, Change&& change,
                             std::vector<hub::PresenceEvent>* events) {
    const std::string key = JetStreamStore::SessionKey(stream);
    for (int attempt = 0; attempt < JetStreamStore::kPresenceCasAttempts; ++attempt) {
      BackOff(attempt);
      auto current = Read(streams, key);
      if (!current) return MakeError(current.error());
      PresenceRecords records;
      if (current->revision != 0 && !current->value.empty() &&
          !DecodeRecords(current->value, &records)) {
        return MakeError("nats: presence records of " + key + " are corrupt");
      }
      std::vector<hub::PresenceEvent> produced;
      auto changed = change(&records, &produced);
      if (!changed) return MakeError(changed.error());
      if (!*changed) return false;
      if (records.empty()) {
        if (current->revision == 0) return true;
        auto deleted = Delete(JetStreamStore::kPresenceStreamsBucket, key, current->revision);
        if (!deleted) return MakeError(deleted.error());
        if (!*deleted) continue;
      } else {
        auto written = Write(streams, key, EncodeRecords(records), current->revision);
        if (!written) return MakeError(written.error());
        if (*written == 0) continue;
      }
      for (auto& e : produced) events->push_back(std::move(e));
      return true;
    }
    return MakeError("nats: presence records of " + key + " keep changing");
  }

  // Read-modify-write of a session: `change` edits it (`exists` false for a new one) and returns
  // false to write nothing; a session left with no stream is deleted.
  template <typename Change>
  Result<bool> UpdateSession(const std::string& sid, Change&& change) {
    const std::string key = JetStreamStore::SessionKey(sid);
    for (int attempt = 0; attempt < JetStreamStore::kPresenceCasAttempts; ++attempt) {
      BackOff(attempt);
      auto current = Read(sessions, key);
      if (!current) return MakeError(current.error());
      PresenceSession session;
      session.sid = sid;
      const bool exists = current->revision != 0 && session.Decode(current->value);
      if (!exists) session = PresenceSession{kSessionLive, sid, 0, {}};
      auto changed = change(&session, exists);
      if (!changed) return MakeError(changed.error());
      if (!*changed) return false;
      if (session.streams.empty()) {
        if (current->revision == 0) return true;
        auto deleted = Delete(JetStreamStore::kPresenceSessionsBucket, key, current->revision);
        if (!deleted) return MakeError(deleted.error());
        if (*deleted) return true;
        continue;
      }
      auto written = Write(sessions, key, session.Encode(), current->revision);
      if (!written) return MakeError(written.error());
      if (*written != 0) return true;
    }
    return MakeError("nats: presence session " + key + " keeps changing");
  }
};

Result<PresenceOps> JetStreamStore::Presence() {
  Impl& im = *impl_;
  if (auto up = im.CheckUp(); !up) return MakeError(up.error());
  auto sessions = im.PresenceSessionsKv();
  if (!sessions) return MakeError(sessions.error());
  auto streams = im.PresenceStreamsKv();
  if (!streams) return MakeError(streams.error());
  return PresenceOps{im, im.options, *sessions, *streams};
}

Result<bool> JetStreamStore::PresenceJoin(const std::string& stream, const std::string& sid,
                                          const std::string& id, const std::string& info_json,
                                          int64_t expires_at,
                                          std::vector<hub::PresenceEvent>* events) {
  auto ops = Presence();
  if (!ops) return MakeError(ops.error());
  const Options& o = impl_->options;
  // 1. The session lists the stream (at most presence_max_streams).
  bool added_stream = false;
  auto listed = ops->UpdateSession(sid, [&](PresenceSession* s, bool) -> Result<bool> {
    // Being swept (it expired: its touches failed) or moved by a restore: refused like a bound
    // (the error reply), not a store failure; the next join after the sweep starts afresh.
    if (s->state != kSessionLive) return false;
    added_stream = false;
    if (std::find(s->streams.begin(), s->streams.end(), stream) == s->streams.end()) {
      if (s->streams.size() >= o.presence_max_streams) return false;
      s->streams.push_back(stream);
      added_stream = true;
    }
    s->expires_at = expires_at;
    return true;
  });
  if (!listed) return MakeError(listed.error());
  if (!*listed) return false;
  // 2. The stream's records (a different id of this session leaves first).
  const size_t max_value = ops->MaxValue();
  auto joined = ops->UpdateRecords(
      stream,
      [&](PresenceRecords* records, std::vector<hub::PresenceEvent>* produced) -> Result<bool> {
        const std::string* old = HeldBy(*records, sid);
        if (old && *old == id) {
          (*records)[id].info = info_json;  // a restored session re-sending its join: refresh
        } else {
          const bool held = records->count(id) != 0;
          if (!held && records->size() >= o.presence_max_records) return false;
          if (old) DropHolder(records, stream, sid, produced);
          auto& holders = (*records)[id];
          holders.sids.push_back(sid);
          holders.info = info_json;  // the latest info, as the memory store
          if (!held) produced->push_back({stream, "join", id, info_json});
        }
        return EncodeRecords(*records).size() <= max_value;
      },
      events);
  if (!joined) return MakeError(joined.error());
  if (!*joined && added_stream) {
    // Refused by a bound: the session no longer lists the stream (best effort).
    (void)ops->UpdateSession(sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
      auto at = std::find(s->streams.begin(), s->streams.end(), stream);
      if (!exists || at == s->streams.end()) return false;
      s->streams.erase(at);
      return true;
    });
  }
  return *joined;
}

Result<bool> JetStreamStore::PresenceLeave(const std::string& stream, const std::string& sid,
                                           std::vector<hub::PresenceEvent>* events) {
  auto ops = Presence();
  if (!ops) return MakeError(ops.error());
  auto left = ops->UpdateRecords(
      stream,
      [&](PresenceRecords* records, std::vector<hub::PresenceEvent>* produced) -> Result<bool> {
        return DropHolder(records, stream, sid, produced);
      },
      events);
  if (!left) return MakeError(left.error());
  auto unlisted = ops->UpdateSession(sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
    auto at = std::find(s->streams.begin(), s->streams.end(), stream);
    if (!exists || at == s->streams.end()) return false;
    s->streams.erase(at);
    return true;
  });
  if (!unlisted) return MakeError(unlisted.error());
  return true;
}

Result<std::vector<hub::PresenceRecord>> JetStreamStore::PresenceInfo(const std::string& stream) {
  auto ops = Presence();
  if (!ops) return MakeError(ops.error());
  auto current = ops->Read(ops->streams, SessionKey(stream));
  if (!current) return MakeError(current.error());
  PresenceRecords records;
  if (current->revision != 0 && !current->value.empty() &&
      !DecodeRecords(current->value, &records)) {
    return MakeError(std::string("nats: presence records are corrupt"));
  }
  std::vector<hub::PresenceRecord> out;
  out.reserve(records.size());
  for (auto& [id, holders] : records) out.push_back({id, std::move(holders.info)});
  return out;
}

Result<bool> JetStreamStore::PresenceTouch(const std::vector<std::string>& sids,
                                           int64_t expires_at) {
  if (sids.empty()) return true;
  auto ops = Presence();
  if (!ops) return MakeError(ops.error());
  for (const auto& sid : sids) {
    auto touched = ops->UpdateSession(sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
      if (!exists || s->state != kSessionLive) return false;  // unknown sids are ignored
      s->expires_at = expires_at;
      return true;
    });
    if (!touched) return MakeError(touched.error());
  }
  return true;
}

Result<bool> JetStreamStore::PresenceRestore(const std::string& old_sid, const std::string& new_sid,
                                             int64_t expires_at) {
  auto ops = Presence();
  if (!ops) return MakeError(ops.error());
  // 1. Claim the old session (one restorer wins; not once a sweep claimed it or it expired).
  PresenceSession moving;
  const int64_t now = UnixNow();
  auto claimed = ops->UpdateSession(old_sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
    if (!exists || s->state != kSessionLive || s->expires_at < now) return false;
    s->state = kSessionMoving;
    s->expires_at = now + kPresenceClaimLeaseS;
    moving = *s;
    return true;
  });
  if (!claimed) return MakeError(claimed.error());
  if (!*claimed) return false;
  // 2. The new session lists the same streams.
  auto created = ops->UpdateSession(new_sid, [&](PresenceSession* s, bool) -> Result<bool> {
    *s = PresenceSession{kSessionLive, new_sid, expires_at, moving.streams};
    return true;
  });
  if (!created) return MakeError(created.error());
  // 3. Its records now name the new sid (no events).
  for (const auto& stream : moving.streams) {
    std::vector<hub::PresenceEvent> none;
    auto moved = ops->UpdateRecords(
        stream,
        [&](PresenceRecords* records, std::vector<hub::PresenceEvent>*) -> Result<bool> {
          bool changed = false;
          for (auto& [id, holders] : *records) {
            for (auto& sid : holders.sids) {
              if (sid != old_sid) continue;
              sid = new_sid;
              changed = true;
            }
          }
          return changed;
        },
        &none);
    if (!moved) return MakeError(moved.error());
  }
  // 4. The old session is gone.
  auto dropped = ops->UpdateSession(old_sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
    if (!exists) return false;
    s->streams.clear();
    return true;
  });
  if (!dropped) return MakeError(dropped.error());
  return true;
}

Result<bool> JetStreamStore::PresenceSweep(int64_t now, std::vector<hub::PresenceEvent>* events) {
  auto ops = Presence();
  if (!ops) return MakeError(ops.error());
  Impl& im = *impl_;
  // Every session's current value, through one watcher (a NULL entry ends the initial values).
  kvWatchOptions wo;
  kvWatchOptions_Init(&wo);
  wo.IgnoreDeletes = true;
  kvWatcher* watcher = nullptr;
  natsStatus s = kvStore_WatchAll(&watcher, ops->sessions, &wo);
  if (s != NATS_OK) return MakeError("nats: cannot list presence sessions: " + StatusText(s));
  std::vector<std::string> expired;  // sids
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  const int64_t deadline_ms = start.tv_sec * 1000 + start.tv_nsec / 1000000 + im.options.timeout_ms;
  std::string error;
  while (true) {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    const int64_t left = deadline_ms - (t.tv_sec * 1000 + t.tv_nsec / 1000000);
    if (left <= 0) {
      error = "nats: timed out listing presence sessions";
      break;
    }
    EntryGuard entry;
    s = kvWatcher_Next(&entry.e, watcher, left);
    if (s != NATS_OK) {
      error = "nats: cannot list presence sessions: " + StatusText(s);
      break;
    }
    if (!entry.e) break;  // all current values seen
    if (expired.size() >= kPresenceSweepBatch) continue;
    PresenceSession session;
    if (!session.Decode(std::string_view(static_cast<const char*>(kvEntry_Value(entry.e)),
                                         static_cast<size_t>(kvEntry_ValueLen(entry.e))))) {
      continue;
    }
    if (session.expires_at <= now) expired.push_back(session.sid);
  }
  kvWatcher_Destroy(watcher);
  if (!error.empty()) return MakeError(std::move(error));
  for (const auto& sid : expired) {
    // Claim by compare-and-set: of the nodes sweeping at once, one goes on.
    PresenceSession claimed;
    auto won = ops->UpdateSession(sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
      if (!exists || s->expires_at > now) return false;  // touched, restored or swept meanwhile
      s->state = kSessionClaimed;
      s->expires_at = now + kPresenceClaimLeaseS;
      claimed = *s;
      return true;
    });
    if (!won) return MakeError(won.error());
    if (!*won) continue;
    for (const auto& stream : claimed.streams) {
      auto left = ops->UpdateRecords(
          stream,
          [&](PresenceRecords* records, std::vector<hub::PresenceEvent>* produced) -> Result<bool> {
            return DropHolder(records, stream, sid, produced);
          },
          events);
      if (!left) return MakeError(left.error());
    }
    auto dropped = ops->UpdateSession(sid, [&](PresenceSession* s, bool exists) -> Result<bool> {
      if (!exists || s->state != kSessionClaimed) return false;  // joined again meanwhile
      s->streams.clear();
      return true;
    });
    if (!dropped) return MakeError(dropped.error());
  }
  return true;
}

}  // namespace cable::nats
