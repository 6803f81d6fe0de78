#include "redis/store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <sys/random.h>

namespace cable::redis {
namespace {

constexpr const char* kPrefix = "_ac_";
constexpr int kTimeoutMs = 1000;        // connect and command timeout
constexpr int64_t kRetryDelayMs = 500;  // after a failed connect

// KEYS: offset counter, stream. ARGV: limit, ttl, data, unix ts, counter ttl, then optionally
// channel, payload head, payload tail (with the epoch): PUBLISH in the same atomic step, so
// pub/sub order is offset order whichever node appends.
constexpr const char* kAppendScript = R"(
local top = redis.call('INCR', KEYS[1])
if top == 1 then redis.call('DEL', KEYS[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '0-' .. top, 'd', ARGV[3], 't', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[6] then redis.call('PUBLISH', ARGV[6], ARGV[7] .. top .. ARGV[8]) end
return top)";

// Presence scripts. ARGV[1] is the key prefix "<p>p:". leave() drops what `sid` holds in
// `stream` and records a leave event when it was the record's last session.
constexpr const char* kPresenceLib = R"(
local P = ARGV[1]
local ev = {1}
local function leave(stream, sid)
  local skey = P .. 's:' .. sid
  local id = redis.call('HGET', skey, stream)
  if not id then return end
  redis.call('HDEL', skey, stream)
  local ckey = P .. 'c:{' .. stream .. '}'
  if redis.call('HINCRBY', ckey, id, -1) <= 0 then
    redis.call('HDEL', ckey, id)
    redis.call('HDEL', P .. 'r:{' .. stream .. '}', id)
    for _, v in ipairs({stream, 'leave', id, ''}) do table.insert(ev, v) end
  end
end
)";

// ARGV: prefix, stream, sid, id, info, expires_at, max records per stream, max streams per sid.
constexpr const char* kPresenceJoin = R"(
local stream, sid, id, info = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local skey = P .. 's:' .. sid
local old = redis.call('HGET', skey, stream)
if old == id then
  -- Already present as this id (e.g. a restored session re-sending its join): refresh the info.
  redis.call('HSET', P .. 'r:{' .. stream .. '}', id, info)
else
  local ckey = P .. 'c:{' .. stream .. '}'
  if not old and redis.call('HLEN', skey) >= tonumber(ARGV[8]) then return {0} end
  local held = redis.call('HEXISTS', ckey, id) == 1
  if not held and redis.call('HLEN', ckey) >= tonumber(ARGV[7]) then return {0} end
  if old then leave(stream, sid) end
  redis.call('HSET', skey, stream, id)
  redis.call('HINCRBY', ckey, id, 1)
  redis.call('HSET', P .. 'r:{' .. stream .. '}', id, info)  -- the latest info, as the memory store
  if not held then
    for _, v in ipairs({stream, 'join', id, info}) do table.insert(ev, v) end
  end
end
redis.call('ZADD', P .. 'exp', ARGV[6], sid)
return ev)";

// ARGV: prefix, stream, sid.
constexpr const char* kPresenceLeave = R"(
leave(ARGV[2], ARGV[3])
if redis.call('EXISTS', P .. 's:' .. ARGV[3]) == 0 then redis.call('ZREM', P .. 'exp', ARGV[3]) end
return ev)";

// ARGV: prefix, old sid, new sid, expires_at.
constexpr const char* kPresenceRestore = R"(
if not redis.call('ZSCORE', P .. 'exp', ARGV[2]) then return {0} end
redis.call('ZREM', P .. 'exp', ARGV[2])
if redis.call('EXISTS', P .. 's:' .. ARGV[2]) == 0 then return {0} end
redis.call('RENAME', P .. 's:' .. ARGV[2], P .. 's:' .. ARGV[3])
redis.call('ZADD', P .. 'exp', ARGV[4], ARGV[3])
return ev)";

// ARGV: prefix, now.
constexpr const char* kPresenceSweep = R"(
local sids = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', ARGV[2], 'LIMIT', 0, 100)
for _, sid in ipairs(sids) do
  redis.call('ZREM', P .. 'exp', sid)
  local held = redis.call('HGETALL', P .. 's:' .. sid)
  for i = 1, #held, 2 do leave(held[i], sid) end
  redis.call('DEL', P .. 's:' .. sid)
end
return ev)";

std::string PresencePrefix() { return std::string(kPrefix) + "p:"; }

std::string JsonQuoted(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

// 4 url-safe characters from the kernel CSPRNG (anycable-go's nanoid(4) epoch).
std::string NewEpoch() {
  static const char kAlphabet[] =
      "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict";
  unsigned char bytes[4] = {};
  if (getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    std::memcpy(bytes, &ts.tv_nsec, sizeof(bytes));
  }
  std::string out;
  for (unsigned char b : bytes) out.push_back(kAlphabet[b & 63]);
  return out;
}

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t UnixNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

struct ReplyPtr {
  redisReply* r = nullptr;
  ~ReplyPtr() {
    if (r) freeReplyObject(r);
  }
};

std::string StreamKey(const std::string& stream, const char* suffix) {
  return std::string(kPrefix) + "{" + stream + "}:" + suffix;
}

// Runs one command; the reply or the error text (context errors and Redis error replies).
Result<bool> Run(redisContext* ctx, const std::vector<std::string>& args, ReplyPtr* out) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  out->r = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(args.size()), argv.data(), lens.data()));
  if (!out->r) return MakeError(std::string(ctx->errstr[0] ? ctx->errstr : "connection lost"));
  if (out->r->type == REDIS_REPLY_ERROR) return MakeError(std::string(out->r->str, out->r->len));
  return true;
}

}  // namespace

cable::Result<std::unique_ptr<Store>, std::string> Store::Make(const Options& options,
                                                               Limits limits) {
  if (options.tls || options.sentinel_mode() || options.cluster_mode()) {
    return MakeError(std::string(
        "--broker redis supports a single plain redis:// server yet (no rediss://, Sentinel or "
        "Cluster)"));
  }
  return std::unique_ptr<Store>(new Store(options, limits));
}

Store::~Store() { Reset(); }

void Store::Reset() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
  epoch_.clear();
}

Result<bool> Store::Connect() {
  if (ctx_) return true;
  const int64_t now = MonoMs();
  if (now < retry_at_ms_) return MakeError(std::string("redis unavailable (retrying)"));
  timeval tv{kTimeoutMs / 1000, (kTimeoutMs % 1000) * 1000};
  redisContext* ctx = redisConnectWithTimeout(options_.host.c_str(), options_.port, tv);
  if (!ctx || ctx->err) {
    std::string err = ctx ? ctx->errstr : "out of memory";
    if (ctx) redisFree(ctx);
    retry_at_ms_ = now + kRetryDelayMs;
    return MakeError("connect " + options_.Describe() + ": " + err);
  }
  redisSetTimeout(ctx, tv);
  ReplyPtr r;
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.username.empty()) auth.push_back(options_.username);
    auth.push_back(options_.password);
    if (auto ok = Run(ctx, auth, &r); !ok) {
      redisFree(ctx);
      retry_at_ms_ = now + kRetryDelayMs;
      return MakeError("AUTH: " + ok.error());
    }
  }
  if (options_.db != 0) {
    ReplyPtr s;
    if (auto ok = Run(ctx, {"SELECT", std::to_string(options_.db)}, &s); !ok) {
      redisFree(ctx);
      retry_at_ms_ = now + kRetryDelayMs;
      return MakeError("SELECT: " + ok.error());
    }
  }
  ctx_ = ctx;
  return true;
}

Result<std::string> Store::Epoch() {
  if (!epoch_.empty()) return epoch_;
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  const std::string key = std::string(kPrefix) + "epoch";
  ReplyPtr set;
  if (auto ok = Run(ctx_, {"SET", key, NewEpoch(), "NX"}, &set); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  ReplyPtr get;
  if (auto ok = Run(ctx_, {"GET", key}, &get); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  if (get.r->type != REDIS_REPLY_STRING) return MakeError(std::string("epoch vanished"));
  epoch_.assign(get.r->str, get.r->len);
  return epoch_;
}

Result<std::vector<uint64_t>> Store::Append(const std::vector<hub::AppendEntry>& batch,
                                            int64_t unix_ts) {
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  const std::string limit = std::to_string(limits_.history_limit > 0 ? limits_.history_limit : 1);
  const std::string ttl = std::to_string(limits_.history_ttl_s > 0 ? limits_.history_ttl_s : 1);
  const std::string counter_ttl =
      std::to_string(10LL * (limits_.history_ttl_s > 0 ? limits_.history_ttl_s : 1));
  const std::string ts = std::to_string(unix_ts);
  const std::string epoch_json = ",\"epoch\":" + JsonQuoted(epoch_);
  for (const auto& e : batch) {
    std::vector<std::string> args = {"EVAL",
                                     kAppendScript,
                                     "2",
                                     StreamKey(e.stream, "o"),
                                     StreamKey(e.stream, "x"),
                                     limit,
                                     ttl,
                                     e.data,
                                     ts,
                                     counter_ttl};
    if (limits_.publish && !e.channel.empty()) {
      args.push_back(e.channel);
      args.push_back(e.payload_head);
      args.push_back(epoch_json + e.payload_tail);
    }
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data());
  }
  std::vector<uint64_t> offsets;
  std::string error;
  for (size_t i = 0; i < batch.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) {
      std::string err = ctx_->errstr[0] ? ctx_->errstr : "connection lost";
      Reset();
      return MakeError(err);
    }
    ReplyPtr r{static_cast<redisReply*>(raw)};
    if (r.r->type == REDIS_REPLY_INTEGER) {
      offsets.push_back(static_cast<uint64_t>(r.r->integer));
    } else {
      offsets.push_back(0);
      if (r.r->type == REDIS_REPLY_ERROR) error.assign(r.r->str, r.r->len);
    }
  }
  // Entries that did get an offset are stored (and published): report them, so they are not
  // sent again unstamped; a batch that got none is an error.
  bool any = false;
  for (uint64_t o : offsets) any |= o != 0;
  if (!error.empty() && !any) return MakeError(error);
  return offsets;
}

Result<std::vector<hub::StoredPublication>> Store::Range(const std::string& stream,
                                                         const std::string& start) {
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  ReplyPtr r;
  if (auto ok = Run(ctx_, {"XRANGE", StreamKey(stream, "x"), start, "+"}, &r); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  std::vector<hub::StoredPublication> out;
  if (r.r->type != REDIS_REPLY_ARRAY) return out;
  const int64_t deadline = UnixNow() - limits_.history_ttl_s;
  for (size_t i = 0; i < r.r->elements; ++i) {
    redisReply* e = r.r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
    redisReply* id = e->element[0];
    redisReply* fields = e->element[1];
    if (id->type != REDIS_REPLY_STRING || fields->type != REDIS_REPLY_ARRAY) continue;
    hub::StoredPublication p;
    const char* dash = static_cast<const char*>(std::memchr(id->str, '-', id->len));
    if (!dash) continue;
    p.offset = std::strtoull(dash + 1, nullptr, 10);
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
      redisReply* k = fields->element[f];
      redisReply* v = fields->element[f + 1];
      if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
      if (k->len == 1 && k->str[0] == 'd') p.data.assign(v->str, v->len);
      if (k->len == 1 && k->str[0] == 't') p.unix_ts = std::strtoll(v->str, nullptr, 10);
    }
    if (p.unix_ts < deadline) continue;  // older than --history_ttl
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::vector<hub::StoredPublication>> Store::ReadFrom(const std::string& stream,
                                                            uint64_t from_offset) {
  return Range(stream, "0-" + std::to_string(from_offset));
}

Result<std::vector<hub::StoredPublication>> Store::ReadSince(const std::string& stream,
                                                             int64_t since_unix_ts) {
  auto all = Range(stream, "-");
  if (!all.ok()) return all;
  std::vector<hub::StoredPublication> out;
  for (auto& p : all.value()) {
    if (p.unix_ts >= since_unix_ts) out.push_back(std::move(p));
  }
  return out;
}

Result<bool> Store::PutSession(const std::string& sid, std::string_view blob, int ttl_s) {
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  ReplyPtr r;
  if (auto ok = Run(ctx_,
                    {"SET", std::string(kPrefix) + "s:" + sid, std::string(blob), "EX",
                     std::to_string(ttl_s)},
                    &r);
      !ok) {
    Reset();
    return MakeError(ok.error());
  }
  return true;
}

Result<std::optional<std::string>> Store::TakeSession(const std::string& sid) {
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  ReplyPtr r;
  if (auto ok = Run(ctx_, {"GETDEL", std::string(kPrefix) + "s:" + sid}, &r); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  if (r.r->type != REDIS_REPLY_STRING) return std::optional<std::string>();
  return std::optional<std::string>(std::string(r.r->str, r.r->len));
}

// ---------------------------------------------------------------------------------------------
// Presence

Result<bool> Store::EvalPresence(const char* script, std::vector<std::string> argv,
                                 std::vector<hub::PresenceEvent>* events) {
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  std::vector<std::string> args = {"EVAL", std::string(kPresenceLib) + script, "0"};
  for (auto& a : argv) args.push_back(std::move(a));
  ReplyPtr r;
  if (auto ok = Run(ctx_, args, &r); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  if (r.r->type != REDIS_REPLY_ARRAY || r.r->elements == 0 ||
      r.r->element[0]->type != REDIS_REPLY_INTEGER) {
    return MakeError(std::string("unexpected presence script reply"));
  }
  for (size_t i = 1; i + 3 < r.r->elements; i += 4) {
    hub::PresenceEvent e;
    redisReply** el = r.r->element + i;
    auto str = [](redisReply* x) {
      return x->type == REDIS_REPLY_STRING ? std::string(x->str, x->len) : std::string();
    };
    e.stream = str(el[0]);
    e.type = str(el[1]);
    e.id = str(el[2]);
    e.info_json = str(el[3]);
    if (events) events->push_back(std::move(e));
  }
  return r.r->element[0]->integer == 1;
}

Result<bool> Store::PresenceJoin(const std::string& stream, const std::string& sid,
                                 const std::string& id, const std::string& info_json,
                                 int64_t expires_at, std::vector<hub::PresenceEvent>* events) {
  return EvalPresence(kPresenceJoin,
                      {PresencePrefix(), stream, sid, id, info_json, std::to_string(expires_at),
                       std::to_string(hub::kPresenceMaxRecordsPerStream),
                       std::to_string(hub::kPresenceMaxStreamsPerSession)},
                      events);
}

Result<bool> Store::PresenceLeave(const std::string& stream, const std::string& sid,
                                  std::vector<hub::PresenceEvent>* events) {
  return EvalPresence(kPresenceLeave, {PresencePrefix(), stream, sid}, events);
}

Result<std::vector<hub::PresenceRecord>> Store::PresenceInfo(const std::string& stream) {
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  ReplyPtr r;
  if (auto ok = Run(ctx_, {"HGETALL", PresencePrefix() + "r:{" + stream + "}"}, &r); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  std::vector<hub::PresenceRecord> out;
  if (r.r->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i + 1 < r.r->elements; i += 2) {
    redisReply* k = r.r->element[i];
    redisReply* v = r.r->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    out.push_back({std::string(k->str, k->len), std::string(v->str, v->len)});
  }
  std::sort(out.begin(), out.end(),
            [](const hub::PresenceRecord& a, const hub::PresenceRecord& b) { return a.id < b.id; });
  return out;
}

Result<bool> Store::PresenceTouch(const std::vector<std::string>& sids, int64_t expires_at) {
  if (sids.empty()) return true;
  if (auto ok = Connect(); !ok) return MakeError(ok.error());
  std::vector<std::string> args = {"ZADD", PresencePrefix() + "exp", "XX"};
  const std::string score = std::to_string(expires_at);
  for (const auto& sid : sids) {
    args.push_back(score);
    args.push_back(sid);
  }
  ReplyPtr r;
  if (auto ok = Run(ctx_, args, &r); !ok) {
    Reset();
    return MakeError(ok.error());
  }
  return true;
}

Result<bool> Store::PresenceRestore(const std::string& old_sid, const std::string& new_sid,
                                    int64_t expires_at) {
  return EvalPresence(kPresenceRestore,
                      {PresencePrefix(), old_sid, new_sid, std::to_string(expires_at)}, nullptr);
}

Result<bool> Store::PresenceSweep(int64_t now, std::vector<hub::PresenceEvent>* events) {
  return EvalPresence(kPresenceSweep, {PresencePrefix(), std::to_string(now)}, events);
}

}  // namespace cable::redis
