#include "rpc_stub/scripted_server.h"

#include <cstdio>
#include <string_view>

#include <simdjson.h>

namespace cable::tools {
namespace {

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Value of `key` in a "k=v<sep>k=v" list, or false.
bool FindPair(std::string_view list, char sep, std::string_view key, std::string* value) {
  while (!list.empty()) {
    size_t end = list.find(sep);
    std::string_view pair = Trim(list.substr(0, end));
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == key) {
      *value = UrlDecode(pair.substr(eq + 1));
      return true;
    }
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return false;
}

std::string Cookie(const anycable::Env& env) {
  auto it = env.headers().find("cookie");
  return it == env.headers().end() ? std::string() : it->second;
}

std::string CurrentUser(const anycable::Env& env) {
  std::string user;
  std::string_view url = env.url();
  size_t q = url.find('?');
  if (q != std::string_view::npos) {
    std::string_view query = url.substr(q + 1);
    query = query.substr(0, query.find('#'));
    if (FindPair(query, '&', "user", &user)) return user;
  }
  if (FindPair(Cookie(env), ';', "user", &user)) return user;
  return "anonymous";
}

// A string field of a JSON object: its string value, or its JSON text for other types.
bool JsonField(simdjson::dom::element obj, std::string_view key, std::string* out) {
  simdjson::dom::element v;
  if (obj[key].get(v) != simdjson::SUCCESS) return false;
  std::string_view s;
  if (v.get_string().get(s) == simdjson::SUCCESS) {
    *out = std::string(s);
  } else {
    *out = simdjson::to_string(v);
  }
  return true;
}

}  // namespace

// Records, copies the current handler under the lock, runs it without the lock.
class ScriptedRpcServer::Service final : public anycable::RPC::Service {
 public:
  explicit Service(ScriptedRpcServer* owner) : owner_(owner) {}

  grpc::Status Connect(grpc::ServerContext* ctx, const anycable::ConnectionRequest* request,
                       anycable::ConnectionResponse* response) override {
    Metadata meta = Meta(ctx);
    ConnectHandler handler;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      owner_->connects_.push_back({*request, meta});
      handler = owner_->connect_handler_;
    }
    owner_->Bump();
    grpc::Status status = handler(*request, meta, response);
    owner_->Bump();
    return status;
  }

  grpc::Status Command(grpc::ServerContext* ctx, const anycable::CommandMessage* request,
                       anycable::CommandResponse* response) override {
    Metadata meta = Meta(ctx);
    CommandHandler handler;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      owner_->commands_.push_back({*request, meta});
      handler = owner_->command_handler_;
    }
    owner_->Bump();
    grpc::Status status = handler(*request, meta, response);
    owner_->Bump();
    return status;
  }

  grpc::Status Disconnect(grpc::ServerContext* ctx, const anycable::DisconnectRequest* request,
                          anycable::DisconnectResponse* response) override {
    Metadata meta = Meta(ctx);
    DisconnectHandler handler;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      owner_->disconnects_.push_back({*request, meta});
      handler = owner_->disconnect_handler_;
    }
    owner_->Bump();
    grpc::Status status = handler(*request, meta, response);
    owner_->Bump();
    return status;
  }

 private:
  static Metadata Meta(grpc::ServerContext* ctx) {
    Metadata meta;
    const auto& md = ctx->client_metadata();
    if (auto it = md.find("sid"); it != md.end())
      meta.sid.assign(it->second.data(), it->second.size());
    if (auto it = md.find("protov"); it != md.end()) {
      meta.protov.assign(it->second.data(), it->second.size());
    }
    return meta;
  }

  ScriptedRpcServer* owner_;
};

ScriptedRpcServer::ScriptedRpcServer()
    : connect_handler_(DemoConnect),
      command_handler_(DemoCommand),
      disconnect_handler_(DemoDisconnect) {}

ScriptedRpcServer::~ScriptedRpcServer() { Stop(); }

int ScriptedRpcServer::Start(const std::string& address) {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (server_ != nullptr) return 0;
  service_ = std::make_unique<Service>(this);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    service_.reset();
    return 0;
  }
  return port;
}

void ScriptedRpcServer::Stop() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (server_ == nullptr) return;
  // After the deadline gRPC cancels what is left; handlers blocked on a test latch still have to
  // be released by the test before this returns.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server_->Wait();
  server_.reset();
  service_.reset();
}

void ScriptedRpcServer::SetConnectHandler(ConnectHandler h) {
  std::lock_guard<std::mutex> lock(mu_);
  connect_handler_ = std::move(h);
}

void ScriptedRpcServer::SetCommandHandler(CommandHandler h) {
  std::lock_guard<std::mutex> lock(mu_);
  command_handler_ = std::move(h);
}

void ScriptedRpcServer::SetDisconnectHandler(DisconnectHandler h) {
  std::lock_guard<std::mutex> lock(mu_);
  disconnect_handler_ = std::move(h);
}

std::vector<RecordedConnect> ScriptedRpcServer::connects() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connects_;
}

std::vector<RecordedCommand> ScriptedRpcServer::commands() const {
  std::lock_guard<std::mutex> lock(mu_);
  return commands_;
}

std::vector<RecordedDisconnect> ScriptedRpcServer::disconnects() const {
  std::lock_guard<std::mutex> lock(mu_);
  return disconnects_;
}

void ScriptedRpcServer::Bump() const {
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    ++version_;
  }
  wait_cv_.notify_all();
}

bool ScriptedRpcServer::WaitFor(const std::function<bool(const ScriptedRpcServer&)>& pred,
                                std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(wait_mu_);
  while (true) {
    // Read the version before evaluating, so a change during pred() is not missed.
    const uint64_t seen = version_;
    lock.unlock();
    if (pred(*this)) return true;
    lock.lock();
    if (!wait_cv_.wait_until(lock, deadline, [&] { return version_ != seen; })) {
      lock.unlock();
      return pred(*this);
    }
  }
}

grpc::Status ScriptedRpcServer::DemoConnect(const anycable::ConnectionRequest& request,
                                            const Metadata& meta,
                                            anycable::ConnectionResponse* response) {
  const anycable::Env& env = request.env();
  if (env.url().find("reject=1") != std::string::npos ||
      Cookie(env).find("reject=1") != std::string::npos) {
    response->set_status(anycable::FAILURE);
    response->add_transmissions(
        R"({"type":"disconnect","reason":"unauthorized","reconnect":false})");
    return grpc::Status::OK;
  }
  const std::string user = CurrentUser(env);
  response->set_status(anycable::SUCCESS);
  response->set_identifiers("{\"current_user\":" + JsonString(user) + "}");
  response->add_transmissions("{\"type\":\"welcome\",\"sid\":" + JsonString(meta.sid) + "}");
  (*response->mutable_env()->mutable_cstate())["user"] = user;
  return grpc::Status::OK;
}

grpc::Status ScriptedRpcServer::DemoCommand(const anycable::CommandMessage& request,
                                            const Metadata& /*meta*/,
                                            anycable::CommandResponse* response) {
  const std::string id = JsonString(request.identifier());
  if (request.command() == "unsubscribe") {
    response->set_status(anycable::SUCCESS);
    response->set_stop_streams(true);
    return grpc::Status::OK;
  }
  if (request.command() == "subscribe") {
    simdjson::dom::parser parser;
    simdjson::dom::element ident;
    std::string channel;
    if (parser.parse(request.identifier()).get(ident) != simdjson::SUCCESS ||
        !JsonField(ident, "channel", &channel)) {
      response->set_status(anycable::ERROR);
      response->set_error_msg("invalid identifier: " + request.identifier());
      return grpc::Status::OK;
    }
    if (channel == "RejectChannel") {
      response->set_status(anycable::FAILURE);
      response->add_transmissions("{\"type\":\"reject_subscription\",\"identifier\":" + id + "}");
      return grpc::Status::OK;
    }
    std::string stream;
    if (!JsonField(ident, "stream", &stream)) stream = channel;
    response->set_status(anycable::SUCCESS);
    response->add_streams(stream);
    response->add_transmissions("{\"type\":\"confirm_subscription\",\"identifier\":" + id + "}");
    return grpc::Status::OK;
  }
  if (request.command() != "message") {
    response->set_status(anycable::ERROR);
    response->set_error_msg("unknown command: " + request.command());
    return grpc::Status::OK;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element data;
  if (parser.parse(request.data()).get(data) != simdjson::SUCCESS || !data.is_object()) {
    response->set_status(anycable::ERROR);
    response->set_error_msg("invalid data: " + request.data());
    return grpc::Status::OK;
  }
  std::string action;
  JsonField(data, "action", &action);
  std::string stream;
  JsonField(data, "stream", &stream);
  response->set_status(anycable::SUCCESS);
  if (action == "echo") {
    response->add_transmissions("{\"identifier\":" + id + ",\"message\":" + request.data() + "}");
  } else if (action == "follow") {
    response->add_streams(stream);
  } else if (action == "unfollow") {
    response->add_stopped_streams(stream);
  } else if (action == "stop_all") {
    response->set_stop_streams(true);
  } else if (action == "disconnect") {
    response->set_disconnect(true);
  } else if (action == "error") {
    response->set_status(anycable::ERROR);
    response->set_error_msg("demo app error");
  } else if (action == "fail") {
    response->set_status(anycable::FAILURE);
  } else if (action == "state") {
    std::string value;
    JsonField(data, "value", &value);
    (*response->mutable_env()->mutable_istate())["k"] = value;
    (*response->mutable_env()->mutable_cstate())["last"] = value;
  }
  return grpc::Status::OK;
}

grpc::Status ScriptedRpcServer::DemoDisconnect(const anycable::DisconnectRequest& /*request*/,
                                               const Metadata& /*meta*/,
                                               anycable::DisconnectResponse* response) {
  response->set_status(anycable::SUCCESS);
  return grpc::Status::OK;
}

}  // namespace cable::tools
