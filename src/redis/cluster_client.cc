// ClusterClient: slot map, routing, redirections and node connections on a private epoll set.
#include "redis/cluster_client.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <random>
#include <utility>

#include "common/log.h"

namespace cable::redis {
namespace {

constexpr int kMaxRedirects = 5;
constexpr int64_t kMinRediscoverMs = 250;  // between two CLUSTER SLOTS rounds
constexpr int16_t kNoOwner = -1;

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with.
constexpr std::array<uint16_t, 256> MakeCrcTable() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    table[static_cast<size_t>(i)] = crc;
  }
  return table;
}
constexpr std::array<uint16_t, 256> kCrcTable = MakeCrcTable();

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrcTable[((crc >> 8) ^ c) & 0xff]);
  }
  return crc;
}

std::string Addr(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// "host:port" (the host may be an unbracketed IPv6 address in MOVED/ASK) → endpoint.
bool SplitAddr(std::string_view text, Endpoint* ep) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return false;
    port = port * 10 + (c - '0');
  }
  if (port <= 0 || port > 65535) return false;
  ep->host = std::string(host);
  ep->port = port;
  return true;
}

bool StartsWith(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

uint16_t KeySlot(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<uint16_t>(Crc16(key) & (kClusterSlots - 1));
}

// A connection the client owns, with its registration in the client's epoll set.
struct ClusterClient::Watched {
  uint64_t id = 0;
  std::string addr;  // "host:port"
  std::unique_ptr<Connection> conn;
  int registered_fd = -1;
  uint32_t registered_events = 0;
  int64_t down_until_ms = 0;  // commands fail at once until then
  bool was_ready = false;     // for one log line per lost node
  bool retired = false;       // no longer a master: closed once its replies are in
};

struct ClusterClient::Map {
  std::vector<Endpoint> masters;
  std::vector<int16_t> owner = std::vector<int16_t>(kClusterSlots, kNoOwner);

  int16_t IndexOf(const Endpoint& ep) {
    for (size_t i = 0; i < masters.size(); ++i) {
      if (masters[i].host == ep.host && masters[i].port == ep.port) return static_cast<int16_t>(i);
    }
    masters.push_back(ep);
    return static_cast<int16_t>(masters.size() - 1);
  }
};

std::unique_ptr<Client> MakeClient(const Options& options, Client::Handler* handler,
                                   std::string name) {
  if (options.cluster_mode()) {
    return std::make_unique<ClusterClient>(options, handler, std::move(name));
  }
  return std::make_unique<Connection>(options, handler, std::move(name));
}

ClusterClient::ClusterClient(Options options, Client::Handler* handler, std::string name)
    : options_(std::move(options)),
      handler_(handler),
      name_(std::move(name)),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) LOG_ERROR("redis %s: epoll_create1 failed: %d", name_.c_str(), errno);
}

ClusterClient::~ClusterClient() {
  // Connections drop their pending callbacks without calling them.
  probe_.reset();
  sub_.reset();
  nodes_.clear();
  graveyard_.clear();
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

Options ClusterClient::NodeOptions(const Endpoint& ep) const {
  Options o = options_;
  o.host = ep.host;
  o.port = ep.port;
  o.db = 0;
  o.sentinels.clear();
  o.cluster = false;
  o.cluster_seeds.clear();
  return o;
}

uint32_t ClusterClient::events() const {
  return epoll_fd_ >= 0 ? static_cast<uint32_t>(EPOLLIN) : 0u;
}

size_t ClusterClient::pending_commands() const {
  size_t n = 0;
  for (const auto& w : nodes_) n += w->conn->pending_commands();
  if (sub_) n += sub_->conn->pending_commands();
  return n;
}

std::string ClusterClient::OwnerOf(uint16_t slot) const {
  if (!map_ || slot >= kClusterSlots) return "";
  int16_t i = map_->owner[slot];
  if (i == kNoOwner) return "";
  return Addr(map_->masters[static_cast<size_t>(i)].host,
              map_->masters[static_cast<size_t>(i)].port);
}

std::vector<std::string> ClusterClient::Masters() const {
  std::vector<std::string> out;
  if (!map_) return out;
  std::vector<bool> used(map_->masters.size(), false);
  for (int16_t i : map_->owner) {
    if (i != kNoOwner) used[static_cast<size_t>(i)] = true;
  }
  for (size_t i = 0; i < map_->masters.size(); ++i) {
    if (used[i]) out.push_back(Addr(map_->masters[i].host, map_->masters[i].port));
  }
  return out;
}

std::string ClusterClient::SubscribeNode() const {
  return sub_ && sub_->conn->state() == State::kReady ? sub_->addr : "";
}

// ------------------------------------------------------------------------------------------------
// Discovery

void ClusterClient::Connect() {
  if (state_ == State::kConnecting || state_ == State::kReady) return;
  state_ = State::kConnecting;
  StartDiscovery();
  SyncEpoll();
}

void ClusterClient::StartDiscovery() {
  discovering_ = true;
  refresh_due_ms_ = 0;
  last_discovery_ms_ = MonotonicMs();
  probe_errors_.clear();
  // Known masters first (they know the newest map), then the URL's addresses; each shuffled.
  thread_local std::mt19937 rng{std::random_device{}()};
  std::vector<Endpoint> known = map_ ? map_->masters : std::vector<Endpoint>{};
  std::vector<Endpoint> seeds = options_.cluster_seeds;
  if (seeds.empty()) seeds.push_back(Endpoint{options_.host, options_.port});
  std::shuffle(known.begin(), known.end(), rng);
  std::shuffle(seeds.begin(), seeds.end(), rng);
  probe_candidates_.clear();
  // Stored reversed: the next candidate is popped from the back.
  for (auto* list : {&seeds, &known}) {
    for (auto it = list->rbegin(); it != list->rend(); ++it) {
      bool dup = false;
      for (const auto& c : probe_candidates_)
        dup = dup || (c.host == it->host && c.port == it->port);
      if (!dup) probe_candidates_.push_back(*it);
    }
  }
  NextProbe();
}

void ClusterClient::NextProbe() {
  if (probe_) {
    probe_->conn->Close();
    Bury(std::move(probe_));
  }
  if (probe_candidates_.empty()) {
    DiscoveryFailed();
    return;
  }
  Endpoint ep = probe_candidates_.back();
  probe_candidates_.pop_back();
  auto w = std::make_unique<Watched>();
  w->id = next_id_++;
  w->addr = Addr(ep.host, ep.port);
  w->conn =
      std::make_unique<Connection>(NodeOptions(ep), &node_handler_, name_ + " probe " + w->addr);
  probe_ = std::move(w);
  Connection* conn = probe_->conn.get();
  conn->Command({"CLUSTER", "SLOTS"}, [this, conn](Reply&& r) { OnSlots(conn, std::move(r)); });
  conn->Connect();  // may fail (OnClosed → NextProbe) before returning
}

void ClusterClient::OnSlots(Connection* probe, Reply&& reply) {
  if (!probe_ || probe_->conn.get() != probe) return;  // an abandoned probe
  // A lost connection also calls OnClosed, which moves on to the next candidate.
  if (reply.is_error() && StartsWith(reply.str, "connection lost")) return;
  const std::string who = probe_->addr;
  auto fail = [&](const std::string& why) {
    if (!probe_errors_.empty()) probe_errors_ += "; ";
    probe_errors_ += who + ": " + why;
    NextProbe();
  };
  if (reply.is_error()) return fail(reply.str);
  if (reply.type != Reply::Type::kArray) return fail("CLUSTER SLOTS: unexpected reply");
  Map map;
  Endpoint self;
  SplitAddr(who, &self);
  for (const auto& range : reply.elements) {
    // [start, end, [host, port, id, ...], replicas...]
    if (range.type != Reply::Type::kArray || range.elements.size() < 3) continue;
    const auto& master = range.elements[2];
    if (master.elements.size() < 2 || master.elements[1].type != Reply::Type::kInteger) continue;
    int64_t start = range.elements[0].integer;
    int64_t end = range.elements[1].integer;
    if (start < 0 || end >= kClusterSlots || start > end) continue;
    Endpoint ep{master.elements[0].str, static_cast<int>(master.elements[1].integer)};
    // An unknown endpoint ("" or "?") is the node we asked.
    if (ep.host.empty() || ep.host == "?") ep.host = self.host;
    int16_t index = map.IndexOf(ep);
    for (int64_t s = start; s <= end; ++s) map.owner[static_cast<size_t>(s)] = index;
  }
  if (map.masters.empty()) return fail("no slots assigned (is the cluster created?)");
  probe_->conn->Close();
  Bury(std::move(probe_));
  InstallMap(std::move(map));
}

void ClusterClient::InstallMap(Map&& map) {
  discovering_ = false;
  stats_.maps++;
  std::vector<std::string> before = Masters();
  map_ = std::make_unique<Map>(std::move(map));
  std::vector<std::string> after = Masters();
  if (before != after) {
    std::string list;
    for (const auto& a : after) list += (list.empty() ? "" : ",") + a;
    LOG_INFO("redis %s: cluster slot map: %zu masters (%s)", name_.c_str(), after.size(),
             list.c_str());
  }
  // Connections to nodes that are no longer masters are retired: commands in flight there still
  // get their replies (a demoted master answers a PUBLISH), then CloseRetired drops them.
  for (auto& w : nodes_) {
    w->retired = std::find(after.begin(), after.end(), w->addr) == after.end();
  }
  CloseRetired();
  if (state_ != State::kConnecting) return;
  if (!subscribe_mode_) {
    state_ = State::kReady;
    handler_->OnReady(*this);
    return;
  }
  // Subscribe mode: one connection to a master picked at random; ready when it is.
  thread_local std::mt19937 rng{std::random_device{}()};
  const Endpoint ep = map_->masters[rng() % map_->masters.size()];
  auto w = std::make_unique<Watched>();
  w->id = next_id_++;
  w->addr = Addr(ep.host, ep.port);
  w->conn = std::make_unique<Connection>(NodeOptions(ep), &node_handler_, name_ + "@" + w->addr);
  w->conn->SetSubscribeMode();
  sub_ = std::move(w);
  sub_->conn->Connect();
}

void ClusterClient::DiscoveryFailed() {
  discovering_ = false;
  std::string reason = "no cluster node answered CLUSTER SLOTS: " +
                       (probe_errors_.empty() ? std::string("no address") : probe_errors_);
  Shutdown(reason, /*notify=*/true);
}

void ClusterClient::ScheduleRefresh() {
  if (state_ != State::kReady || subscribe_mode_ || discovering_ || refresh_due_ms_ != 0) return;
  refresh_due_ms_ = std::max(MonotonicMs(), last_discovery_ms_ + kMinRediscoverMs);
}

// ------------------------------------------------------------------------------------------------
// Commands

void ClusterClient::Command(std::vector<std::string> args, Callback cb) {
  if (args.empty()) {
    if (cb) cb(Reply::Error("empty command"));
    return;
  }
  if (subscribe_mode_) {
    // Subscriptions (and their PINGs) all live on the one subscribe connection.
    if (sub_ && sub_->conn->state() == State::kReady) {
      sub_->conn->Command(std::move(args));
      SyncEpoll();
    }
    return;
  }
  // The first argument after the command name (PUBLISH's channel) picks the node, so one
  // channel's publications keep their order; a lone command (PING) follows the last one.
  if (args.size() >= 2) {
    const int slot = KeySlot(args[1]);  // before `args` is moved into the call
    Route(slot, std::move(args), std::move(cb), 0, "", false);
  } else {
    // The last node used, while it is still a master.
    const auto masters = Masters();
    const bool live = std::find(masters.begin(), masters.end(), last_addr_) != masters.end();
    Route(-1, std::move(args), std::move(cb), 0, live ? last_addr_ : std::string(), false);
  }
  SyncEpoll();
}

void ClusterClient::KeyCommand(const std::string& key, std::vector<std::string> args, Callback cb) {
  if (args.empty()) {
    if (cb) cb(Reply::Error("empty command"));
    return;
  }
  Route(KeySlot(key), std::move(args), std::move(cb), 0, "", false);
  SyncEpoll();
}

void ClusterClient::Route(int slot, std::vector<std::string> args, Callback cb, int redirects,
                          const std::string& forced_addr, bool asking) {
  if (state_ != State::kReady || !map_) {
    if (cb) cb(Reply::Error("redis cluster " + name_ + ": not connected"));
    return;
  }
  std::string addr = forced_addr;
  if (addr.empty() && slot >= 0) addr = OwnerOf(static_cast<uint16_t>(slot));
  if (addr.empty()) {
    // No owner known (keyless command before any, or a slot the cluster does not serve).
    auto masters = Masters();
    if (!masters.empty() && slot < 0) addr = masters.front();
  }
  if (addr.empty()) {
    ScheduleRefresh();
    if (cb) cb(Reply::Error("CLUSTERDOWN slot " + std::to_string(slot) + " is not served"));
    return;
  }
  Watched* node = EnsureNode(addr);
  const int64_t now = MonotonicMs();
  if (node->down_until_ms > now) {
    if (cb) cb(Reply::Error("connection lost: node " + addr + " is down"));
    return;
  }
  if (node->conn->state() == State::kIdle || node->conn->state() == State::kClosed) {
    node->conn->Connect();
    if (node->down_until_ms > MonotonicMs()) {  // failed at once (OnClosed ran)
      if (cb) cb(Reply::Error("connection lost: node " + addr + " is down"));
      return;
    }
  }
  if (slot < 0 || forced_addr.empty()) last_addr_ = addr;
  if (asking) node->conn->Command({"ASKING"});
  auto shared = std::make_shared<std::vector<std::string>>(std::move(args));
  node->conn->Command(
      *shared, [this, shared, cb = std::move(cb), slot, redirects, from = addr](Reply&& r) mutable {
        if (r.is_error()) {
          const bool moved = StartsWith(r.str, "MOVED ");
          const bool ask = StartsWith(r.str, "ASK ");
          if ((moved || ask) && redirects < kMaxRedirects) {
            // "MOVED <slot> <host>:<port>" (an empty host means the node that answered).
            size_t sp1 = r.str.find(' ');
            size_t sp2 = r.str.find(' ', sp1 + 1);
            Endpoint target;
            if (sp2 != std::string::npos &&
                SplitAddr(std::string_view(r.str).substr(sp2 + 1), &target)) {
              if (target.host.empty()) {
                Endpoint self;
                SplitAddr(from, &self);
                target.host = self.host;
              }
              int to_slot = std::atoi(r.str.c_str() + sp1 + 1);
              std::string to = Addr(target.host, target.port);
              if (moved) {
                stats_.moved++;
                if (map_ && to_slot >= 0 && to_slot < kClusterSlots) {
                  map_->owner[static_cast<size_t>(to_slot)] = map_->IndexOf(target);
                }
                ScheduleRefresh();
              } else {
                stats_.ask++;
              }
              Route(slot, std::move(*shared), std::move(cb), redirects + 1, to, ask);
              SyncEpoll();
              return;
            }
          }
          if (StartsWith(r.str, "connection lost") || StartsWith(r.str, "CLUSTERDOWN") ||
              StartsWith(r.str, "TRYAGAIN")) {
            ScheduleRefresh();
          }
        }
        if (cb) cb(std::move(r));
      });
}

void ClusterClient::CloseRetired() {
  for (size_t i = 0; i < nodes_.size();) {
    if (nodes_[i]->retired && nodes_[i]->conn->pending_commands() == 0) {
      nodes_[i]->conn->Close();
      Bury(std::move(nodes_[i]));
      nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

ClusterClient::Watched* ClusterClient::EnsureNode(const std::string& addr) {
  for (auto& w : nodes_) {
    if (w->addr == addr) {
      w->retired = false;  // a redirection (or the map) sends commands there again
      return w.get();
    }
  }
  Endpoint ep;
  SplitAddr(addr, &ep);
  auto w = std::make_unique<Watched>();
  w->id = next_id_++;
  w->addr = addr;
  w->conn = std::make_unique<Connection>(NodeOptions(ep), &node_handler_, name_ + "@" + addr);
  nodes_.push_back(std::move(w));
  return nodes_.back().get();
}

// ------------------------------------------------------------------------------------------------
// Handler for the probe and node connections

ClusterClient::Watched* ClusterClient::FindByClient(const Client& c) {
  if (probe_ && probe_->conn.get() == &c) return probe_.get();
  if (sub_ && sub_->conn.get() == &c) return sub_.get();
  for (auto& w : nodes_) {
    if (w->conn.get() == &c) return w.get();
  }
  return nullptr;
}

void ClusterClient::OnNodeReady(Client& c) {
  Watched* w = FindByClient(c);
  if (!w) return;
  w->was_ready = true;
  if (w == sub_.get() && state_ == State::kConnecting) {
    state_ = State::kReady;
    handler_->OnReady(*this);
  }
}

void ClusterClient::OnNodePush(Client& c, Reply&& reply) {
  if (sub_ && sub_->conn.get() == &c) handler_->OnPush(*this, std::move(reply));
}

void ClusterClient::OnNodeClosed(Client& c, const std::string& reason) {
  Watched* w = FindByClient(c);
  if (!w) return;
  if (w == probe_.get()) {
    if (!probe_errors_.empty()) probe_errors_ += "; ";
    probe_errors_ += w->addr + ": " + reason;
    NextProbe();
    return;
  }
  stats_.node_lost++;
  if (w == sub_.get()) {
    Shutdown("subscribe node " + w->addr + ": " + reason, /*notify=*/true);
    return;
  }
  if (w->was_ready) {
    LOG_WARN("redis %s: cluster node %s lost: %s (refreshing the slot map)", name_.c_str(),
             w->addr.c_str(), reason.c_str());
  } else {
    LOG_DEBUG("redis %s: cluster node %s: %s", name_.c_str(), w->addr.c_str(), reason.c_str());
  }
  w->was_ready = false;
  w->down_until_ms = MonotonicMs() + options_.cluster_node_retry_ms;
  ScheduleRefresh();
}

// ------------------------------------------------------------------------------------------------
// Event loop

void ClusterClient::OnEvents(uint32_t) {
  Collect();
  epoll_event events[64];
  int n = epoll_fd_ >= 0 ? epoll_wait(epoll_fd_, events, 64, 0) : 0;
  for (int i = 0; i < n; ++i) {
    // Look the connection up by id: an earlier event of this round may have dropped it.
    const uint64_t id = events[i].data.u64;
    Watched* w = nullptr;
    if (probe_ && probe_->id == id) w = probe_.get();
    if (sub_ && sub_->id == id) w = sub_.get();
    for (auto& node : nodes_) {
      if (node->id == id) w = node.get();
    }
    if (w) w->conn->OnEvents(events[i].events);
  }
  CloseRetired();
  SyncEpoll();
  Collect();
}

void ClusterClient::Tick(int64_t now_ms) {
  Collect();
  if (probe_) probe_->conn->Tick(now_ms);
  if (sub_) sub_->conn->Tick(now_ms);
  for (size_t i = 0; i < nodes_.size(); ++i) nodes_[i]->conn->Tick(now_ms);
  CloseRetired();
  if (state_ == State::kReady && !subscribe_mode_ && !discovering_ && refresh_due_ms_ == 0 &&
      options_.cluster_refresh_ms > 0 &&
      now_ms - last_discovery_ms_ >= options_.cluster_refresh_ms) {
    refresh_due_ms_ = now_ms;  // the periodic re-read
  }
  if (state_ == State::kReady && !discovering_ && refresh_due_ms_ != 0 &&
      now_ms >= refresh_due_ms_) {
    StartDiscovery();
  }
  SyncEpoll();
  Collect();
}

void ClusterClient::SyncEpoll() {
  if (epoll_fd_ < 0) return;
  auto sync = [this](Watched* w) {
    int fd = w->conn->fd();
    uint32_t ev = fd >= 0 ? w->conn->events() : 0;
    if (fd == w->registered_fd && ev == w->registered_events) return;
    if (w->registered_fd >= 0 && fd != w->registered_fd) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w->registered_fd, nullptr);  // may already be closed
    }
    if (fd >= 0) {
      epoll_event e{};
      e.events = ev;
      e.data.u64 = w->id;
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &e) != 0 && errno == ENOENT) {
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e);
      }
    }
    w->registered_fd = fd;
    w->registered_events = ev;
  };
  if (probe_) sync(probe_.get());
  if (sub_) sync(sub_.get());
  for (auto& w : nodes_) sync(w.get());
}

void ClusterClient::Bury(std::unique_ptr<Watched> w) {
  if (!w) return;
  if (w->registered_fd >= 0 && epoll_fd_ >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w->registered_fd, nullptr);
  }
  w->registered_fd = -1;
  graveyard_.push_back(std::move(w));
}

void ClusterClient::Collect() { graveyard_.clear(); }

void ClusterClient::Shutdown(const std::string& reason, bool notify) {
  state_ = State::kClosed;
  discovering_ = false;
  refresh_due_ms_ = 0;
  probe_candidates_.clear();
  if (probe_) {
    probe_->conn->Close();
    Bury(std::move(probe_));
  }
  if (sub_) {
    sub_->conn->Close();
    Bury(std::move(sub_));
  }
  // Take the nodes out first: error callbacks may send new commands (they fail: not connected).
  std::vector<std::unique_ptr<Watched>> nodes;
  nodes.swap(nodes_);
  for (auto& w : nodes) {
    w->conn->Close();
    Bury(std::move(w));
  }
  last_addr_.clear();
  if (notify) handler_->OnClosed(*this, reason);
}

void ClusterClient::Close() { Shutdown("closed", /*notify=*/false); }

}  // namespace cable::redis
