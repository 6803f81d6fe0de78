// Worker: HTTP requests on the main port (WebSocket upgrade, health) and the broadcast endpoint.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "common/log.h"
#include "server/worker.h"
#include "ws/deflate.h"

namespace cable::server {
namespace {
constexpr size_t kMaxHeadBytes = 16 * 1024;
constexpr size_t kMaxBroadcastBody = 16 * 1024 * 1024;
constexpr const char kHealthBody[] = "Ah, ha, ha, ha, stayin' alive, stayin' alive.";

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  return out;
}
}  // namespace

metrics::Snapshot SampleMetrics(const Shared& shared) {
  metrics::Snapshot snap;
  snap.workers.reserve(shared.workers.size());
  for (const auto& w : shared.workers) snap.workers.push_back(metrics::Sample(w->counters()));
  if (shared.rpc) snap.rpc = metrics::Sample(shared.rpc->stats());
  if (shared.cluster) snap.cluster = metrics::Sample(shared.cluster->counters());
  if (shared.presence) {
    const auto sizes = shared.presence->sizes();
    snap.presence = {.present = true,
                     .streams = static_cast<int64_t>(sizes.streams),
                     .records = static_cast<int64_t>(sizes.records),
                     .sessions = static_cast<int64_t>(sizes.sessions)};
  }
  if (shared.broker) {
    snap.broker.memory = true;
    snap.broker.history_streams = shared.broker->history_streams();
    snap.broker.history_entries = shared.broker->history_entries();
    snap.broker.sessions = static_cast<int64_t>(shared.broker->sessions());
  }
  if (shared.remote_broker) {
    const hub::BrokerCounters& b = shared.remote_broker->counters();
    snap.broker.remote = true;
    snap.broker.errors_total = b.errors_total.load(std::memory_order_relaxed);
    snap.broker.stamped_total = b.stamped_total.load(std::memory_order_relaxed);
    snap.broker.unstamped_total = b.unstamped_total.load(std::memory_order_relaxed);
    snap.broker.history_rejected_total = b.history_rejected_total.load(std::memory_order_relaxed);
    snap.broker.presence_events_total = b.presence_events_total.load(std::memory_order_relaxed);
    snap.broker.store_up = b.store_up.load(std::memory_order_relaxed);
  }
  return snap;
}

std::string RenderMetrics(const Shared& shared) {
  auto tags = metrics::ParseTags(shared.cfg.metrics_tags);
  return metrics::RenderPrometheus(SampleMetrics(shared),
                                   tags.ok() ? tags.value() : metrics::Tags{});
}

void Worker::Respond(Conn& c, uint32_t slot, int status, std::string_view body, bool close) {
  if (close) c.keep_alive = false;
  if (status >= 400 && c.http && c.http->api_request) counters_.api_failed_requests_total.Add();
  EnqueueRaw(c, slot, http::BuildResponse(status, body, "text/plain; charset=utf-8", {}, close));
}

void Worker::OnHttpBytes(Conn& c, uint32_t slot) {
  while (c.state == ConnState::kHttp && c.http && !c.http->buf.empty() &&
         !c.http->awaiting_cluster && !c.http->awaiting_poll) {
    http::Request req;
    http::ParseError perr = http::ParseError::kNone;
    http::ParseStatus st = http::ParseRequestHead(c.http->buf, kMaxHeadBytes, &req, &perr);
    if (st == http::ParseStatus::kIncomplete) return;
    if (st == http::ParseStatus::kError) {
      int status = perr == http::ParseError::kHeadTooLarge         ? 431
                   : perr == http::ParseError::kUnsupportedVersion ? 505
                                                                   : 400;
      Respond(c, slot, status, http::StatusText(status), true);
      c.http->buf.clear();
      PauseReading(c, slot);
      return;
    }
    auto conn_hdr = req.Get("connection");
    c.keep_alive = req.minor_version >= 1;
    if (conn_hdr) {
      std::string v = Lower(*conn_hdr);
      if (v.find("close") != std::string::npos) c.keep_alive = false;
      if (v.find("keep-alive") != std::string::npos) c.keep_alive = true;
    }
    const bool on_main = c.listener == Listener::kMain;
    const bool is_broadcast_path =
        req.path == cfg_.http_broadcast_path &&
        (c.listener == Listener::kBroadcast || (on_main && shared_.broadcast_on_main_port));
    c.http->api_request = false;
    if (is_broadcast_path) {
      if (!HandleBroadcastRequest(c, slot, req, cfg_.broadcast_key)) return;  // body incomplete
      continue;
    }
    const bool api_here = cfg_.api_enabled &&
                          (c.listener == Listener::kApi || (on_main && shared_.api_on_main_port) ||
                           (c.listener == Listener::kBroadcast && shared_.api_on_broadcast_port));
    const bool is_api_path = api_here && req.path.size() > cfg_.api_path.size() &&
                             req.path.compare(0, cfg_.api_path.size(), cfg_.api_path) == 0 &&
                             req.path[cfg_.api_path.size()] == '/';
    c.http->api_request = is_api_path;
    if (is_api_path && req.path.substr(cfg_.api_path.size()) == "/publish") {
      if (!HandleBroadcastRequest(c, slot, req, cfg_.api_secret)) return;  // body incomplete
      counters_.api_requests_total.Add();
      continue;
    }
    if (on_main && cfg_.sse && req.path == cfg_.sse_path) {
      if (c.sendq_head < c.sendq.size()) {
        // The answer to an earlier request is still going out: the stream's head must follow
        // it, so the request waits until the queue is empty (OnSend).
        c.http->sse_deferred = true;
        return;
      }
      HandleSse(c, slot, req);  // a stream now, refused, or its body is incomplete
      return;
    }
    if (on_main && cfg_.poll && req.path == cfg_.poll_path) {
      if (!HandlePoll(c, slot, req)) return;  // body incomplete
      continue;  // answered (keep-alive), or waiting for its session (awaiting_poll)
    }
    size_t consumed = req.head_size;
    if (on_main && std::find(cfg_.paths.begin(), cfg_.paths.end(), std::string(req.path)) !=
                       cfg_.paths.end()) {
      HandleUpgrade(c, slot, req);
      return;
    }
    if (is_api_path) {
      counters_.api_requests_total.Add();
      HandleApiRequest(c, slot, req);
    } else if (on_main && req.path == cfg_.health_path) {
      Respond(c, slot, 200, kHealthBody, !c.keep_alive);
    } else if (on_main && !cfg_.metrics_http.empty() && req.path == cfg_.metrics_http &&
               (cfg_.metrics_port == 0 || cfg_.metrics_port == cfg_.port)) {
      EnqueueRaw(
          c, slot,
          http::BuildResponse(200, RenderMetrics(shared_),
                              "text/plain; version=0.0.4; charset=utf-8", {}, !c.keep_alive));
    } else {
      Respond(c, slot, 404, "404 page not found\n", !c.keep_alive);
    }
    // Requests without a body only; a body on these paths is not expected, skip it if declared.
    size_t skip = consumed + (req.content_length ? *req.content_length : 0);
    if (skip > c.http->buf.size()) skip = c.http->buf.size();
    c.http->buf.erase(0, skip);
    if (c.http->deadline_ms != 0) c.http->deadline_ms = now_ms_ + cfg_.handshake_timeout_s * 1000LL;
    if (!c.keep_alive) {
      PauseReading(c, slot);
      return;
    }
  }
}

void Worker::HandleApiRequest(Conn& c, uint32_t slot, const http::Request& req) {
  // <api_path>/presence/<stream>/users; <stream> is percent-decoded.
  std::string_view rest = std::string_view(req.path).substr(cfg_.api_path.size());
  constexpr std::string_view kPrefix = "/presence/";
  constexpr std::string_view kSuffix = "/users";
  const bool presence_path = rest.size() > kPrefix.size() + kSuffix.size() &&
                             rest.substr(0, kPrefix.size()) == kPrefix &&
                             rest.substr(rest.size() - kSuffix.size()) == kSuffix;
  if (!presence_path) {
    Respond(c, slot, 404, "404 page not found\n", !c.keep_alive);
    return;
  }
  const std::string stream = http::PercentDecode(
      rest.substr(kPrefix.size(), rest.size() - kPrefix.size() - kSuffix.size()));
  if (!cfg_.api_secret.empty()) {
    auto auth = req.Get("authorization");
    if (!auth || *auth != "Bearer " + cfg_.api_secret) {
      Respond(c, slot, 401, http::StatusText(401), !c.keep_alive);
      return;
    }
  }
  if (req.method != "GET") {
    Respond(c, slot, 422, http::StatusText(422), !c.keep_alive);
    return;
  }
  if (RemotePresence()) {
    // The store answers on the broker thread; pipelined requests wait for it (as a broadcast
    // waits for pub/sub). OnRemotePresenceReply responds.
    c.http->awaiting_cluster = true;
    shared_.remote_broker->PresenceInfo(this, ConnToken(c, slot), std::string(), stream);
    return;
  }
  if (!shared_.presence) {
    Respond(c, slot, 501, http::StatusText(501), !c.keep_alive);
    return;
  }
  std::vector<std::pair<std::string, std::string>> records;
  for (auto& r : shared_.presence->Info(stream)) {
    records.emplace_back(std::move(r.id), std::move(r.info_json));
  }
  EnqueueRaw(c, slot,
             http::BuildResponse(200, protocol::EncodePresenceInfo(records), "application/json", {},
                                 !c.keep_alive));
}

bool Worker::HandleBroadcastRequest(Conn& c, uint32_t slot, const http::Request& req,
                                    const std::string& key) {
  std::string body;
  size_t total = req.head_size;
  if (req.chunked) {
    size_t consumed = 0;
    auto st = http::DecodeChunkedBody(std::string_view(c.http->buf).substr(req.head_size),
                                      kMaxBroadcastBody, &body, &consumed);
    if (st == http::ParseStatus::kIncomplete) return false;
    if (st == http::ParseStatus::kError) {
      Respond(c, slot, 422, "Unprocessable Entity", true);
      c.http->buf.clear();
      PauseReading(c, slot);
      return true;
    }
    total += consumed;
  } else {
    size_t len = req.content_length.value_or(0);
    if (len > kMaxBroadcastBody) {
      Respond(c, slot, 413, "Request Entity Too Large", true);
      c.http->buf.clear();
      PauseReading(c, slot);
      return true;
    }
    if (c.http->buf.size() < req.head_size + len) return false;
    body.assign(c.http->buf, req.head_size, len);
    total += len;
  }
  int status = 201;
  if (req.method != "POST") {
    status = 422;
  } else if (!key.empty()) {
    auto auth = req.Get("authorization");
    if (!auth || *auth != "Bearer " + key) status = 401;
  }
  if (status == 201) {
    auto parsed = broadcast_parser_.Parse(body);
    if (!parsed.ok()) {
      counters_.failed_broadcast_msg_total.Add();
      LOG_DEBUG("broadcast: invalid payload (%s)", body.substr(0, 200).c_str());
    } else if (shared_.remote_broker && shared_.cluster && shared_.cluster->pubsub()) {
      // --broker redis: stamped on the broker thread, then pub/sub (worker_broker.cc).
      c.http->buf.erase(0, total);
      c.http->awaiting_cluster = true;
      PublishViaRemoteBroker(c, slot, std::move(parsed.value()));
      return true;
    } else if (shared_.cluster && shared_.cluster->pubsub()) {
      // Every node (this one included) delivers it from pub/sub; answer once the broker took it,
      // so 201 means "published" and a broker outage is a 501, not a silent loss.
      std::vector<cluster::Outgoing> batch;
      for (auto& item : parsed.value()) {
        if (auto* pub = std::get_if<protocol::Publication>(&item)) {
          counters_.publications_total.Add();
          batch.push_back({pub->stream, cluster::EncodePublication(*pub)});
        } else if (auto* cmd = std::get_if<protocol::RemoteDisconnect>(&item)) {
          counters_.remote_commands_total.Add();
          batch.push_back({std::string(), cluster::EncodeRemoteDisconnect(*cmd)});
        }
      }
      if (!batch.empty()) {
        c.http->buf.erase(0, total);
        c.http->awaiting_cluster = true;
        shared_.cluster->Publish(std::move(batch), this, ConnToken(c, slot));
        return true;
      }
    } else {
      const int workers = static_cast<int>(shared_.workers.size());
      for (auto& item : parsed.value()) {
        if (auto* pub = std::get_if<protocol::Publication>(&item)) {
          counters_.publications_total.Add();
          PublishLocal(hub::Message::NewPublication(pub->stream,
                                                    message_encoder_.MessageJson(pub->data),
                                                    pub->exclude_socket, workers, pub->transient));
        } else if (auto* cmd = std::get_if<protocol::RemoteDisconnect>(&item)) {
          counters_.remote_commands_total.Add();
          PublishLocal(hub::Message::NewRemoteDisconnect(cmd->identifier, cmd->reconnect, workers));
        }
      }
    }
  }
  c.http->buf.erase(0, total);
  FinishBroadcastRequest(c, slot, status);
  return true;
}

bool Worker::FinishBroadcastRequest(Conn& c, uint32_t slot, int status) {
  if (c.http->deadline_ms != 0) c.http->deadline_ms = now_ms_ + cfg_.handshake_timeout_s * 1000LL;
  Respond(c, slot, status, status == 201 ? "" : http::StatusText(status), !c.keep_alive);
  if (!c.keep_alive) PauseReading(c, slot);
  return c.keep_alive;
}

void Worker::OnClusterAckItem(uint64_t token, bool ok) {
  const uint32_t slot = static_cast<uint32_t>(token);
  Conn* c = LookupToken(token);
  if (!c || c->state != ConnState::kHttp || !c->http || !c->http->awaiting_cluster) return;
  c->http->awaiting_cluster = false;
  if (!ok) counters_.failed_broadcast_msg_total.Add();
  if (FinishBroadcastRequest(*c, slot, ok ? 201 : 501)) {
    OnHttpBytes(*c, slot);  // requests pipelined behind this one
  }
}

void Worker::WatchHandshake(Conn& c, uint32_t slot) {
  if (cfg_.handshake_timeout_s <= 0) return;  // 0 = no limit; deadline_ms stays 0
  c.http->deadline_ms = now_ms_ + cfg_.handshake_timeout_s * 1000LL;
  http_deadlines_.push_back({c.http->deadline_ms, slot, c.gen});
  std::push_heap(http_deadlines_.begin(), http_deadlines_.end(), std::greater<>());
}

void Worker::ExpireHandshakes() {
  while (!http_deadlines_.empty() && http_deadlines_.front().ms <= now_ms_) {
    std::pop_heap(http_deadlines_.begin(), http_deadlines_.end(), std::greater<>());
    HttpDeadline d = http_deadlines_.back();
    http_deadlines_.pop_back();
    Conn* c = Lookup(d.slot, d.gen);
    if (!c || c->state != ConnState::kHttp || !c->http) continue;  // upgraded or gone
    if (c->http->awaiting_poll) {
      // A long poll is answered within --poll_interval; its connection is not idle.
      c->http->deadline_ms = now_ms_ + cfg_.handshake_timeout_s * 1000LL;
    }
    if (c->http->deadline_ms > now_ms_) {
      // Renewed by a completed keep-alive request: track the new deadline instead.
      http_deadlines_.push_back({c->http->deadline_ms, d.slot, d.gen});
      std::push_heap(http_deadlines_.begin(), http_deadlines_.end(), std::greater<>());
      continue;
    }
    // Like Go's ReadHeaderTimeout: no response, the connection is just closed.
    LOG_DEBUG("handshake timeout (%d s): closing connection", cfg_.handshake_timeout_s);
    BeginClosing(*c, d.slot);
    ForceClose(*c, d.slot);
  }
}

}  // namespace cable::server
