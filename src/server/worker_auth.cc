// Worker: RPC-less authentication (JWT, --noauth, --norpc) and the built-in channels ($pubsub,
// Turbo Streams, CableReady) plus whisper. Verification itself lives in the auth module; this file
// only applies its verdicts to a connection (spec §1 "JWT identification", "Signed streams",
// "Noauth / public mode / norpc", "Whisper"; §5 items 3, 12, 21).
#include <time.h>

#include <algorithm>
#include <cctype>

#include "common/log.h"
#include "server/worker.h"
#include "ws/frame.h"

namespace cable::server {

auth::StreamsOptions Worker::StreamsOptionsFrom(const config::Config& cfg) {
  auth::StreamsOptions o;
  o.streams_secret = cfg.streams_secret;
  o.public_streams = cfg.public_streams;
  o.whisper = cfg.streams_whisper;
  o.turbo_streams = cfg.turbo_streams;
  o.turbo_secret = cfg.turbo_streams_secret;
  o.cable_ready = cfg.cable_ready;
  o.cable_ready_secret = cfg.cable_ready_secret;
  return o;
}

std::optional<std::string> Worker::ExtractJwt(const config::Config& cfg, const http::Request& req,
                                              const http::UpgradeRequest& up) {
  // Order as anycable-go: X-<PARAM> header, then the anycable-token.<jwt> subprotocol, then
  // ?<param>=.
  std::string header = "x-" + cfg.jwt_param;
  std::transform(header.begin(), header.end(), header.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  if (auto v = req.Get(header); v && !v->empty()) return std::string(*v);
  constexpr std::string_view kPrefix = "anycable-token.";
  for (std::string_view p : up.protocols) {
    if (p.starts_with(kPrefix) && p.size() > kPrefix.size()) {
      return std::string(p.substr(kPrefix.size()));
    }
  }
  if (auto q = http::QueryParam(req.query, cfg.jwt_param); q && !q->empty()) return *q;
  return std::nullopt;
}

bool Worker::AuthenticateLocally(Conn& c, uint32_t slot, const std::optional<std::string>& token) {
  const bool jwt_enabled = !cfg_.jwt_secret.empty();
  if (jwt_enabled && token) {
    auto verified = auth::VerifyJwt(*token, cfg_.jwt_secret, static_cast<int64_t>(::time(nullptr)));
    if (verified.ok()) {
      OpenLocalSession(c, slot, std::move(verified.value().ext));
      return true;
    }
    const auth::JwtError err = verified.error();
    LOG_DEBUG("sid=%s JWT rejected: %s", c.session->sid.c_str(), auth::JwtErrorName(err));
    if (err == auth::JwtError::kMissingExt || err == auth::JwtError::kExtNotString) {
      // A correctly signed token the app built wrong: a server-side error, as anycable-go.
      CloseWithFrame(c, slot, ws::close_code::kInternalError, "Auth Error");
      return true;
    }
    counters_.failed_auths_total.Add();
    // A present but invalid token never falls back to RPC (spec §5 item 3).
    CloseWithDisconnect(c, slot, err == auth::JwtError::kExpired ? "token_expired" : "unauthorized",
                        false, ws::close_code::kNormal, "Auth Failed");
    return true;
  }
  if (jwt_enabled && cfg_.enforce_jwt) {
    counters_.failed_auths_total.Add();
    CloseWithDisconnect(c, slot, "unauthorized", false, ws::close_code::kNormal, "Auth Failed");
    return true;
  }
  if (cfg_.noauth) {
    std::string ids = "{\"sid\":";
    protocol::AppendJsonString(ids, c.session->sid);
    ids += '}';
    OpenLocalSession(c, slot, std::move(ids));
    return true;
  }
  if (cfg_.norpc) {
    counters_.failed_auths_total.Add();
    CloseWithDisconnect(c, slot, "unauthorized", false, ws::close_code::kNormal, "Auth Failed");
    return true;
  }
  return false;
}

void Worker::OpenLocalSession(Conn& c, uint32_t slot, std::string identifiers) {
  Session& s = *c.session;
  s.identifiers = std::move(identifiers);
  s.authenticated = true;
  s.rpc_free_auth = true;
  s.needs_disconnect_rpc = !cfg_.norpc && cfg_.disconnect_mode != config::DisconnectMode::kNever;
  c.state = ConnState::kOpen;
  counters_.clients_num.Add(1);
  EnqueueText(c, slot, protocol::EncodeWelcome(s.sid));
  StartPings(c, slot);
}

bool Worker::HandleBuiltinSubscribe(Conn& c, uint32_t slot, const protocol::ClientCommand& cmd) {
  auth::BuiltinDecision d = auth::ResolveBuiltinChannel(cmd.identifier, streams_opts_);
  if (d.kind == auth::BuiltinKind::kNone) {
    if (!cfg_.norpc) return false;
    EnqueueText(c, slot, protocol::EncodeReject(cmd.identifier));
    return true;
  }
  if (!d.confirmed) {
    LOG_DEBUG("sid=%s built-in subscription rejected: %s", c.session->sid.c_str(),
              cmd.identifier.c_str());
    EnqueueText(c, slot, protocol::EncodeReject(cmd.identifier));
    return true;
  }
  Session& s = *c.session;
  auto sub = std::make_unique<SubState>();
  sub->sub.identifier = cmd.identifier;
  sub->sub.conn_slot = slot;
  sub->sub.conn_generation = c.gen;
  sub->builtin = true;
  if (d.whisper) sub->istate = std::make_unique<StateMap>(StateMap{{"$w", d.stream}});
  if (d.kind == auth::BuiltinKind::kPubSub && cfg_.streams_presence && HasPresence()) {
    if (!sub->istate) sub->istate = std::make_unique<StateMap>();
    (*sub->istate)["$p"] = d.stream;
  }
  index_map_.Add(&sub->sub, d.stream);
  s.subs.push_back(std::move(sub));
  EnqueueText(c, slot, protocol::EncodeConfirm(cmd.identifier));
  return true;
}

void Worker::HandleWhisper(Conn& c, uint32_t, const protocol::ClientCommand& cmd) {
  Session& s = *c.session;
  SubState* sub = s.Find(cmd.identifier);
  if (!sub || !sub->istate || !cmd.has_data) return;
  auto it = sub->istate->find("$w");
  if (it == sub->istate->end() || it->second.empty()) return;
  counters_.publications_total.Add();
  // Whispers are transient (as anycable-go's): never stored in history, no offset.
  PublishLocal(hub::Message::NewPublication(it->second, message_encoder_.MessageJson(cmd.data),
                                            s.sid, static_cast<int>(shared_.workers.size()), true));
}

}  // namespace cable::server
