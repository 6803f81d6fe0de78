// Scripted AnyCable RPC server (gRPC sync server, default settings) for tests and benchmarks.
// Every call is recorded (request + "sid"/"protov" metadata) on arrival, then answered by a
// replaceable handler; the defaults are the "demo app" described in tools/rpc_stub/README.md.
//
// Threads: handlers run on gRPC's server threads, possibly many at once, and must be
// thread-safe. Every public method may be called from any thread. The server owns its gRPC
// server and the recorded calls; handlers are copied out under a lock before each call, so a
// handler may be replaced while calls run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "rpc.grpc.pb.h"
#include "rpc.pb.h"

namespace cable::tools {

struct Metadata {
  std::string sid;
  std::string protov;
};
struct RecordedConnect {
  anycable::ConnectionRequest request;
  Metadata meta;
};
struct RecordedCommand {
  anycable::CommandMessage request;
  Metadata meta;
};
struct RecordedDisconnect {
  anycable::DisconnectRequest request;
  Metadata meta;
};

class ScriptedRpcServer {
 public:
  using ConnectHandler = std::function<grpc::Status(
      const anycable::ConnectionRequest&, const Metadata&, anycable::ConnectionResponse*)>;
  using CommandHandler = std::function<grpc::Status(const anycable::CommandMessage&,
                                                    const Metadata&, anycable::CommandResponse*)>;
  using DisconnectHandler = std::function<grpc::Status(
      const anycable::DisconnectRequest&, const Metadata&, anycable::DisconnectResponse*)>;

  ScriptedRpcServer();   // default handlers = the demo app
  ~ScriptedRpcServer();  // Stop()
  ScriptedRpcServer(const ScriptedRpcServer&) = delete;
  ScriptedRpcServer& operator=(const ScriptedRpcServer&) = delete;

  // Returns the bound port, or 0 if the address could not be bound (or already started).
  int Start(const std::string& address = "127.0.0.1:0");
  // Handlers still blocked after a short grace are the caller's problem: Stop waits for them.
  void Stop();

  void SetConnectHandler(ConnectHandler h);
  void SetCommandHandler(CommandHandler h);
  void SetDisconnectHandler(DisconnectHandler h);

  std::vector<RecordedConnect> connects() const;
  std::vector<RecordedCommand> commands() const;
  std::vector<RecordedDisconnect> disconnects() const;

  // Re-evaluates `pred` whenever a call arrives or finishes, until it is true or `timeout`
  // passes; returns its final value. pred may call the accessors above.
  bool WaitFor(const std::function<bool(const ScriptedRpcServer&)>& pred,
               std::chrono::milliseconds timeout) const;

  static grpc::Status DemoConnect(const anycable::ConnectionRequest& request, const Metadata& meta,
                                  anycable::ConnectionResponse* response);
  static grpc::Status DemoCommand(const anycable::CommandMessage& request, const Metadata& meta,
                                  anycable::CommandResponse* response);
  static grpc::Status DemoDisconnect(const anycable::DisconnectRequest& request,
                                     const Metadata& meta, anycable::DisconnectResponse* response);

 private:
  class Service;
  void Bump() const;  // wakes WaitFor

  mutable std::mutex mu_;  // handlers and records
  ConnectHandler connect_handler_;
  CommandHandler command_handler_;
  DisconnectHandler disconnect_handler_;
  std::vector<RecordedConnect> connects_;
  std::vector<RecordedCommand> commands_;
  std::vector<RecordedDisconnect> disconnects_;

  mutable std::mutex wait_mu_;  // separate from mu_ so predicates can use the accessors
  mutable std::condition_variable wait_cv_;
  mutable uint64_t version_ = 0;

  std::mutex lifecycle_mu_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace cable::tools
