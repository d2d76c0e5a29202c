// What the second loopback hop of a proxied bulk transfer costs, without the
// rest of the proxy around it: a bare relay between one client and the
// origin. `splice` moves the bytes with pinfold's own SpliceRelay (the code
// behind TLS pass-through and large plain bodies) in a minimal poll loop;
// `sockmap` lets the kernel move them (an sk_skb verdict program redirects
// each segment to the other socket, relay_probe.bpf.c), so no user-space
// wake-up happens per segment. bench.py times curl through both and reads
// this process's CPU time from /proc: the question is whether a kernel relay
// would close the 100 MiB gap. Not a proxy: no policy, one connection at a
// time, and the sockmap mode assumes the client speaks first and then waits
// (an HTTP request, a TLS ClientHello).
//
// usage: relay_probe splice|sockmap ORIGIN_PORT
// Prints "PORT\n" once listening on 127.0.0.1; runs until killed.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "relay_probe_bpf.skel.h"
#include "splice_relay.hpp"

namespace {

[[noreturn]] void die(const char* what)
{
    std::fprintf(stderr, "relay_probe: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

sockaddr_in loopback(std::uint16_t port)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int dial_origin(std::uint16_t port)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in to = loopback(port);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
        std::perror("relay_probe: connect to the origin");
        if (fd >= 0)
            ::close(fd);
        return -1;
    }
    return fd;
}

void relay_with_splice(int client, int origin)
{
    for (int fd : {client, origin})
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    auto relay = pinfold::proxy::SpliceRelay::create();
    if (!relay) {
        std::fprintf(stderr, "relay_probe: %s\n", relay.error().what().c_str());
        return;
    }
    for (;;) {
        auto step = relay->pump(client, origin);
        if (step.done || !step.error.empty())
            return;
        if (step.progress)
            continue;
        pollfd fds[2] = {{client, static_cast<short>(relay->client_events()), 0},
                         {origin, static_cast<short>(relay->upstream_events()), 0}};
        // The client closing ends the transfer; a wait this long means it
        // is gone without a word.
        if (::poll(fds, 2, 30000) <= 0)
            return;
        if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLNVAL))
            return;
    }
}

// The client's first flight is read here and sent to the origin only after
// both sockets are in the map: the origin has nothing to say before it, so
// none of its bytes can arrive before the redirect is in place.
void relay_with_sockmap(int client, int origin, int slots_fd)
{
    timeval tv{5, 0};
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char first[16384];
    ssize_t n = ::recv(client, first, sizeof first, 0);
    if (n <= 0)
        return;
    std::uint32_t slot_client = 0;
    std::uint32_t slot_origin = 1;
    std::uint64_t client_fd = static_cast<std::uint64_t>(client);
    std::uint64_t origin_fd = static_cast<std::uint64_t>(origin);
    if (::bpf_map_update_elem(slots_fd, &slot_client, &client_fd, BPF_ANY) != 0 ||
        ::bpf_map_update_elem(slots_fd, &slot_origin, &origin_fd, BPF_ANY) != 0) {
        std::perror("relay_probe: sockmap update");
        return;
    }
    if (::send(origin, first, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n)
        return;
    // Closing the sockets takes them out of the map.
    pollfd fds[2] = {{client, POLLRDHUP, 0}, {origin, POLLRDHUP, 0}};
    ::poll(fds, 2, 600000);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 3 || (std::string_view(argv[1]) != "splice" && std::string_view(argv[1]) != "sockmap")) {
        std::fprintf(stderr, "usage: relay_probe splice|sockmap ORIGIN_PORT\n");
        return 2;
    }
    bool sockmap = std::string_view(argv[1]) == "sockmap";
    auto origin_port = static_cast<std::uint16_t>(std::strtoul(argv[2], nullptr, 10));

    int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in any = loopback(0);
    socklen_t len = sizeof any;
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 ||
        ::listen(listener, 16) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&any), &len) != 0)
        die("listen on 127.0.0.1");
    std::uint16_t port = ntohs(any.sin_port);

    relay_probe_bpf* skel = nullptr;
    int slots_fd = -1;
    if (sockmap) {
        skel = relay_probe_bpf__open();
        if (!skel)
            die("open the BPF object");
        skel->rodata->listen_port = port;
        if (relay_probe_bpf__load(skel) != 0)
            die("load the sk_skb program");
        slots_fd = bpf_map__fd(skel->maps.relay_slots);
        if (::bpf_prog_attach(bpf_program__fd(skel->progs.relay_verdict), slots_fd, BPF_SK_SKB_STREAM_VERDICT, 0) != 0)
            die("attach the verdict program to the sockmap");
    }
    std::printf("%u\n", port);
    std::fflush(stdout);

    for (;;) {
        int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        int origin = dial_origin(origin_port);
        if (origin >= 0) {
            if (sockmap)
                relay_with_sockmap(client, origin, slots_fd);
            else
                relay_with_splice(client, origin);
            ::close(origin);
        }
        ::close(client);
    }
}
