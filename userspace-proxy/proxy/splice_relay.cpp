#include "splice_relay.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace pinfold::proxy {

Result<SpliceRelay> SpliceRelay::create()
{
    SpliceRelay relay;
    for (Direction* d : {&relay.up_, &relay.down_}) {
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
            return fail_errno("pipe for splice relay");
        d->pipe_read = fds[0];
        d->pipe_write = fds[1];
    }
    int size = ::fcntl(relay.up_.pipe_write, F_GETPIPE_SZ);
    relay.capacity_ = size > 0 ? static_cast<std::size_t>(size) : 65536;
    return relay;
}

SpliceRelay::SpliceRelay(SpliceRelay&& other) noexcept
    : up_(other.up_), down_(other.down_), capacity_(other.capacity_)
{
    other.up_ = Direction{};
    other.down_ = Direction{};
}

SpliceRelay::~SpliceRelay()
{
    for (Direction* d : {&up_, &down_}) {
        if (d->pipe_read >= 0)
            ::close(d->pipe_read);
        if (d->pipe_write >= 0)
            ::close(d->pipe_write);
    }
}

bool SpliceRelay::move(int from, int to, Direction& d, std::string& error) noexcept
{
    bool moved = false;
    // Bounded so one busy direction cannot starve the event loop.
    for (int i = 0; i < 16; ++i) {
        bool step = false;
        if (!d.source_eof && d.queued < capacity_) {
            ssize_t n = ::splice(from, nullptr, d.pipe_write, nullptr, capacity_ - d.queued,
                                 SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                d.queued += static_cast<std::size_t>(n);
                step = true;
            } else if (n == 0) {
                d.source_eof = true;
                step = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                error = std::string("splice from socket: ") + std::strerror(errno);
                return moved;
            }
        }
        if (d.queued > 0) {
            ssize_t n = ::splice(d.pipe_read, nullptr, to, nullptr, d.queued, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                d.queued -= static_cast<std::size_t>(n);
                d.total += static_cast<std::uint64_t>(n);
                step = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                error = std::string("splice to socket: ") + std::strerror(errno);
                return moved;
            }
        }
        if (d.source_eof && d.queued == 0 && !d.shut) {
            ::shutdown(to, SHUT_WR);
            d.shut = true;
        }
        moved = moved || step;
        if (!step)
            break;
    }
    return moved;
}

SpliceRelay::Step SpliceRelay::pump(int client, int upstream) noexcept
{
    Step s;
    s.progress = move(client, upstream, up_, s.error);
    if (s.error.empty())
        s.progress = move(upstream, client, down_, s.error) || s.progress;
    s.done = up_.shut && down_.shut;
    return s;
}

std::uint32_t SpliceRelay::events_for(const Direction& reading, const Direction& writing) const noexcept
{
    std::uint32_t events = 0;
    if (!reading.source_eof && reading.queued < capacity_)
        events |= EPOLLIN;
    if (writing.queued > 0)
        events |= EPOLLOUT;
    return events;
}

std::uint32_t SpliceRelay::client_events() const noexcept { return events_for(up_, down_); }
std::uint32_t SpliceRelay::upstream_events() const noexcept { return events_for(down_, up_); }

} // namespace pinfold::proxy
