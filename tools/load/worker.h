// A ringcable-load worker process: one epoll loop driving its share of the client connections
// (non-blocking connect from a 127.0.0.x source address, upgrade, welcome, subscribe, confirm,
// then receive broadcasts). Runs single-threaded in a forked child; reports to the parent over
// report_fd and obeys commands from ctrl_fd (see ipc.h). Owns every socket it opens.
#pragma once

#include <cstdint>
#include <string_view>

#include "options.h"

namespace cable::load {

struct WorkerPlan {
  int index = 0;
  int first_conn = 0;   // global index of this worker's first connection
  int count = 0;        // connections this worker opens
  double rate = 0;      // connects per second for this worker, 0 = unlimited
  int concurrency = 1;  // handshakes in flight for this worker
};

// Returns the process exit status.
int RunWorker(const Options& options, const WorkerPlan& plan, int ctrl_fd, int report_fd);

// What an Action Cable server frame means to a load client.
enum class CableKind {
  kOther,
  kWelcome,
  kPing,
  kConfirm,
  kReject,
  kDisconnect,
  kDelivery,
  kConfirmHistory,
  kRejectHistory,
};

struct CableEvent {
  CableKind kind = CableKind::kOther;
  uint64_t seq = 0;  // kDelivery only
  int64_t ts = 0;    // kDelivery only: CLOCK_REALTIME ns when published
};

// Classifies one text frame without a full JSON parse. A delivery is a frame with a "message"
// carrying the tool's {"seq":N,"ts":T,...} (embedded as an object or as a JSON string).
CableEvent ClassifyFrame(std::string_view text);

int64_t MonotonicNs();
int64_t RealtimeNs();

}  // namespace cable::load
