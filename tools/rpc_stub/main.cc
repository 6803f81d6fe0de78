// rpc_stub: standalone AnyCable RPC server serving the demo app (see README.md) for manual runs,
// interop tests and benchmarks. Single process; the main thread only waits for SIGTERM/SIGINT.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "rpc_stub/scripted_server.h"

namespace {

void Usage() {
  std::fprintf(stderr, "usage: rpc_stub [--address 127.0.0.1:50051] [--delay_ms N]\n");
}

// Flags take "--name value" or "--name=value".
bool FlagValue(int argc, char** argv, int* i, const char* name, std::string* value) {
  const size_t len = std::strlen(name);
  const char* arg = argv[*i];
  if (std::strncmp(arg, name, len) != 0) return false;
  if (arg[len] == '=') {
    *value = arg + len + 1;
    return true;
  }
  if (arg[len] == '\0' && *i + 1 < argc) {
    *value = argv[++*i];
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1:50051";
  int delay_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (FlagValue(argc, argv, &i, "--address", &value)) {
      address = value;
    } else if (FlagValue(argc, argv, &i, "--delay_ms", &value)) {
      char* end = nullptr;
      long v = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || v < 0 || v > 600000) {
        std::fprintf(stderr, "rpc_stub: bad --delay_ms '%s'\n", value.c_str());
        return 2;
      }
      delay_ms = static_cast<int>(v);
    } else {
      std::fprintf(stderr, "rpc_stub: unknown argument '%s'\n", argv[i]);
      Usage();
      return 2;
    }
  }

  // Block the signals before gRPC starts its threads so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cable::tools::ScriptedRpcServer server;
  if (delay_ms > 0) {
    const auto delay = std::chrono::milliseconds(delay_ms);
    using S = cable::tools::ScriptedRpcServer;
    server.SetConnectHandler([delay](const auto& req, const auto& meta, auto* resp) {
      std::this_thread::sleep_for(delay);
      return S::DemoConnect(req, meta, resp);
    });
    server.SetCommandHandler([delay](const auto& req, const auto& meta, auto* resp) {
      std::this_thread::sleep_for(delay);
      return S::DemoCommand(req, meta, resp);
    });
    server.SetDisconnectHandler([delay](const auto& req, const auto& meta, auto* resp) {
      std::this_thread::sleep_for(delay);
      return S::DemoDisconnect(req, meta, resp);
    });
  }
  const int port = server.Start(address);
  if (port == 0) {
    std::fprintf(stderr, "rpc_stub: cannot listen on %s\n", address.c_str());
    return 1;
  }
  std::printf("listening on %d\n", port);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  server.Stop();
  return 0;
}
