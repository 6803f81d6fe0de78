// sd_notify: systemd's readiness protocol without libsystemd — one datagram to the AF_UNIX socket
// named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace). Any thread; stateless.
#pragma once

#include <string>
#include <string_view>

namespace cable::metrics {

// Sends `state` (e.g. "READY=1\nSTATUS=Listening on :8080") if NOTIFY_SOCKET is set.
// Returns false when it is unset, malformed or the send failed (systemd then times out on its own;
// nothing else to do).
bool SdNotify(std::string_view state);

// Same, with the socket path given explicitly (for tests); an empty path returns false.
bool SdNotifyTo(const std::string& socket_path, std::string_view state);

}  // namespace cable::metrics
