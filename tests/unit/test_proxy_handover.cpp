// The loader → proxy handover of the maps (pinfold/proxy_handover.hpp).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pinfold/proxy_handover.hpp"

using namespace pinfold;

namespace {

struct Pair {
    int fds[2] = {-1, -1};
    Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0); }
    ~Pair()
    {
        for (int fd : fds)
            if (fd >= 0)
                ::close(fd);
    }
};

bool same_file(int a, int b)
{
    struct stat sa {}, sb {};
    return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

} // namespace

TEST_CASE("proxy handover: the origin map alone, then with degraded identity and the lookup socket")
{
    int origin = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int lookup = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    REQUIRE(origin >= 0);
    REQUIRE(lookup >= 0);
    {
        Pair p;
        REQUIRE(send_proxy_handover(p.fds[0], ProxyHandover{origin, -1, false}));
        auto got = receive_proxy_handover(p.fds[1], -1, 1000);
        REQUIRE(got);
        CHECK(same_file(got->origin_map_fd, origin));
        CHECK(got->exe_lookup_fd == -1);
        CHECK_FALSE(got->degraded_identity);
        CHECK((::fcntl(got->origin_map_fd, F_GETFD) & FD_CLOEXEC) != 0);
        ::close(got->origin_map_fd);
    }
    {
        Pair p;
        REQUIRE(send_proxy_handover(p.fds[0], ProxyHandover{origin, lookup, true}));
        auto got = receive_proxy_handover(p.fds[1], -1, 1000);
        REQUIRE(got);
        CHECK(same_file(got->origin_map_fd, origin));
        CHECK(same_file(got->exe_lookup_fd, lookup));
        CHECK(got->degraded_identity);
        ::close(got->origin_map_fd);
        ::close(got->exe_lookup_fd);
    }
    ::close(origin);
    ::close(lookup);
}

TEST_CASE("proxy handover: a loader that gives up, a timeout or a message without the map is an error")
{
    CHECK_FALSE(send_proxy_handover(-1, ProxyHandover{}));   // no origin map: refused before sending
    {
        // The loader closed the stop pipe (its load failed).
        Pair p;
        int stop[2];
        REQUIRE(::pipe2(stop, O_CLOEXEC) == 0);
        ::close(stop[1]);
        auto got = receive_proxy_handover(p.fds[1], stop[0], 1000);
        REQUIRE_FALSE(got);
        CHECK(got.error().message.find("stopped the run") != std::string::npos);
        ::close(stop[0]);
    }
    {
        // The loader's end closed.
        Pair p;
        ::close(p.fds[0]);
        p.fds[0] = -1;
        CHECK_FALSE(receive_proxy_handover(p.fds[1], -1, 1000));
    }
    {
        Pair p;
        CHECK_FALSE(receive_proxy_handover(p.fds[1], -1, 10));   // nothing within the bound
    }
    {
        // A flags byte without any descriptor.
        Pair p;
        char flags = 0;
        REQUIRE(::send(p.fds[0], &flags, 1, 0) == 1);
        auto got = receive_proxy_handover(p.fds[1], -1, 1000);
        REQUIRE_FALSE(got);
        CHECK(got.error().message.find("malformed") != std::string::npos);
    }
}
