// server upgrade control — the main thread's side of a live upgrade (design:
// src/upgrade/upgrade.h).
//
// Old process: RunUpgrade (on SIGUSR2) starts the new binary, hands it the listeners, waits for
// its kReady, tells the workers to hand their connections over, carries {socket, record} from the
// workers' outbox to the new process and its acks back to the workers, and returns true once every
// worker handed everything over (the process then exits), false when the upgrade failed (the old
// process keeps serving).
// New process: ReceiveListeners before the workers bind, AdoptFromOldProcess once they run.
//
// Ownership: the control socket belongs to the main thread of each process; workers are reached
// only through their inbox (Worker::BeginHandover/OnHandoverAck/AbortHandover/Adopt).
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "server/shared.h"

namespace cable::server {

// Old process. `argv`: the command line this process was started with (argv[0] is re-executed).
// `metrics_fd`: the separate metrics server's listening socket (-1 without one), handed over too.
bool RunUpgrade(Shared& shared, const std::vector<std::string>& argv, int metrics_fd);

// New process: the control socket from $RINGCABLE_UPGRADE_FD (unset afterwards), -1 when this is
// an ordinary start.
int TakeUpgradeSocket();
struct InheritedListeners {
  std::vector<int> main_fds;   // one per old worker
  std::vector<int> bcast_fds;  // empty without a separate broadcast port
  std::vector<int> api_fds;    // empty without a separate REST API port
  int metrics_fd = -1;         // the separate --metrics_port listener, -1 without one
  bool pubsub_fence = false;   // the old process will fence its pub/sub links (kPubSubStreams)
};
cable::Result<InheritedListeners, std::string> ReceiveListeners(int ctl);
// Workers run: kReady, then adopt connections until kDone (or the old process's end), then
// release the publications held meanwhile. Blocks the calling (main) thread.
void AdoptFromOldProcess(Shared& shared, int ctl);

}  // namespace cable::server
