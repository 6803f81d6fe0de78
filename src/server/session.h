// server::Session — what an Action Cable connection *is*, whatever carries it: identifiers,
// connection state (cstate), subscriptions with their channel state (istate), the client commands
// waiting their turn, the RPC call in flight and the flags that decide its Disconnect call.
//
// The session layer (worker_session.cc: commands and RPC; worker_auth.cc: JWT/noauth and built-in
// channels; worker_streams.cc: history and restore; worker_presence.cc) acts on a Session and
// talks to its transport only through the Worker's transport seam (worker.h, "transport seam"):
// a reply is queued as JSON text (EnqueueText) or a shared broadcast frame (Enqueue), and the
// session ends through CloseWithFrame / CloseWithDisconnect. Which bytes those become — WebSocket
// frames, SSE events, JSON lines — is the transport's business (worker_ws.cc, worker_sse.cc,
// worker_poll.cc), as is reading client commands, which each transport pushes into `pending`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hub/local_index.h"
#include "protocol/command.h"
#include "rpc/client.h"

namespace cable::server {

using StateMap = std::map<std::string, std::string>;

// A subscription plus its channel state (istate), allocated only when the app sets some: most
// subscriptions never have any, and a million idle connections pay for every byte.
struct SubState {
  hub::Subscription sub;
  std::unique_ptr<StateMap> istate;
  bool builtin = false;  // $pubsub / Turbo / CableReady: served without RPC
};

// Application state of one connection (allocated when its transport starts the session).
struct Session {
  std::string sid;
  std::string identifiers;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::map<std::string, std::string> cstate;
  std::vector<std::unique_ptr<SubState>> subs;
  // Client frames waiting for the current command (or the Connect) to finish, in arrival order.
  // Released as soon as it drains: idle sessions keep no queue memory.
  std::vector<std::string> pending;
  uint32_t pending_head = 0;
  uint32_t pending_bytes = 0;
  rpc::CallPtr inflight;  // its request carries the identifier the command is for
  protocol::CommandType inflight_type = protocol::CommandType::kUnknown;
  bool authenticated = false;
  bool needs_disconnect_rpc = false;
  // Authenticated by JWT or --noauth, and (until a command goes to RPC) only built-in channels:
  // --disconnect_mode auto then skips the Disconnect RPC.
  bool rpc_free_auth = false;
  bool used_rpc = false;
  // actioncable-v1-ext-json was negotiated: pong requirement, session restore, positions on
  // broadcast frames.
  bool ext = false;
  // Kept for restore when it closes: the sid came from NewSid (the kernel CSPRNG), not from
  // X-Request-ID (a client-chosen sid can neither restore nor overwrite another session), and the
  // server did not send it a disconnect with reconnect=false (a kicked session stays kicked).
  bool restorable = false;
  // The "history" member of the subscribe command in flight (run after its confirmation).
  std::string inflight_history;
  std::string inflight_presence;  // "presence" of an in-flight ext subscribe: joined if confirmed
  bool presence_joined = false;   // holds (or may hold) records in the PresenceStore
  // --broker redis|nats: a history read is at the broker thread; later commands wait for its reply
  // (as behind an RPC call), so replies keep the order of the commands.
  bool broker_inflight = false;
  SubState* Find(const std::string& identifier);
  const SubState* Find(const std::string& identifier) const {
    return const_cast<Session*>(this)->Find(identifier);
  }
};

}  // namespace cable::server
