#pragma once
// Container mode: the proxy and its resolver share the job's cgroup, so the
// hooks see their sockets too. Before connecting an upstream socket (and on
// the resolver's UDP server sockets) they mark it in the loader's
// exempt_map (bpf/lib/exempt.h) through an inherited map fd the job never
// holds. In host mode no map is installed and marking does nothing.
//
// One process-wide map, set once at start-up, so the data path calls a
// plain function where it creates a socket.

#include <cstdint>

namespace pinfold {

// Installs the map fd (from --exempt-map-fd); -1 leaves marking off.
void set_exemption_map(int map_fd) noexcept;
[[nodiscard]] bool exemption_enabled() noexcept;

// Marks `fd` so its next connect goes where it is told instead of into the
// proxy. False (errno set) if the mark could not be written: the caller
// must not connect, the hooks would steer the socket back to the proxy.
[[nodiscard]] bool exempt_upstream(int fd) noexcept;
// Marks the resolver's UDP server socket: its replies to loopback clients.
[[nodiscard]] bool exempt_replies(int fd) noexcept;

// Tests replace the kernel write; nullptr restores it.
using ExemptionWriter = bool (*)(int map_fd, int socket_fd, std::uint64_t mark);
void set_exemption_writer_for_testing(ExemptionWriter writer) noexcept;

} // namespace pinfold
