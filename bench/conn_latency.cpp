// One HTTP GET per new TCP connection, N times in a row; prints the
// per-connection time (socket() to close(), response fully read) as JSON
// percentiles. Run directly, inside `pinfold run` (its connect is steered),
// or against a forward proxy with --absolute (request line carries the URL).
//
// usage: conn_latency HOST PORT PATH COUNT [--absolute TARGET_HOST:PORT] [--auth BASE64]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Returns false on any error; every call is bounded by SO_RCVTIMEO/SO_SNDTIMEO.
bool one_request(const sockaddr_in& to, const std::string& request)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 &&
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
        std::string in;
        char buf[16384];
        std::size_t need = std::string::npos;
        for (int i = 0; i < 10000; ++i) {
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                break;
            in.append(buf, static_cast<std::size_t>(n));
            if (need == std::string::npos) {
                auto end = in.find("\r\n\r\n");
                if (end == std::string::npos)
                    continue;
                auto cl = in.find("Content-Length: ");
                if (cl == std::string::npos || cl > end)
                    cl = in.find("content-length: ");
                if (cl == std::string::npos || cl > end)
                    break;
                need = end + 4 + std::strtoul(in.c_str() + cl + 16, nullptr, 10);
            }
            if (in.size() >= need) {
                ok = in.compare(0, 12, "HTTP/1.1 200") == 0;
                break;
            }
        }
    }
    ::close(fd);
    return ok;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 5) {
        std::fprintf(stderr, "usage: conn_latency HOST PORT PATH COUNT [--absolute HOST:PORT] [--auth BASE64]\n");
        return 2;
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
    if (::inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        std::fprintf(stderr, "conn_latency: %s: not an IPv4 address\n", argv[1]);
        return 2;
    }
    std::string path = argv[3];
    long count = std::atol(argv[4]);
    if (count < 1 || count > 1000000) {
        std::fprintf(stderr, "conn_latency: COUNT must be 1..1000000\n");
        return 2;
    }
    std::string host = std::string(argv[1]) + ":" + argv[2];
    std::string target = path;
    std::string extra;
    for (int i = 5; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--absolute") == 0) {
            host = argv[i + 1];
            target = "http://" + host + path;
        } else if (std::strcmp(argv[i], "--auth") == 0) {
            extra += std::string("Proxy-Authorization: Basic ") + argv[i + 1] + "\r\n";
        }
    }
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra +
                          "User-Agent: conn_latency\r\nConnection: close\r\n\r\n";

    // A few unmeasured rounds warm caches and the proxy's allocator.
    for (int i = 0; i < 20; ++i)
        one_request(to, request);
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(count));
    long errors = 0;
    for (long i = 0; i < count; ++i) {
        auto t0 = Clock::now();
        bool ok = one_request(to, request);
        auto t1 = Clock::now();
        if (!ok) {
            ++errors;
            continue;
        }
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    if (us.empty()) {
        std::printf("{\"count\": 0, \"errors\": %ld}\n", errors);
        return 1;
    }
    std::sort(us.begin(), us.end());
    auto pct = [&](double p) { return us[std::min(us.size() - 1, static_cast<std::size_t>(p * us.size()))]; };
    std::printf("{\"count\": %zu, \"errors\": %ld, \"p50_us\": %.1f, \"p99_us\": %.1f}\n", us.size(), errors,
                pct(0.50), pct(0.99));
    return errors == 0 ? 0 : 1;
}
