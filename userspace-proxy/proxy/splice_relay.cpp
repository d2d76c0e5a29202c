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
        int size = ::fcntl(d->pipe_write, F_GETPIPE_SZ);
        d->capacity = size > 0 ? static_cast<std::size_t>(size) : 65536;
    }
    return relay;
}

// A direction that filled its pipe carries a bulk transfer: a larger pipe
// moves it in fewer splice() calls and wake-ups. Only then, because the
// pipe pages of an unprivileged user are limited in all (fs.pipe-user-
// pages-soft: past it, new pipes get 2 pages), and most relayed connections
// never fill 64 KiB. A refusal keeps the pipe as it was.
void SpliceRelay::grow(Direction& d) noexcept
{
    constexpr int bulk_pipe_bytes = 1 << 20;
    d.grown = true;
    if (::fcntl(d.pipe_write, F_SETPIPE_SZ, bulk_pipe_bytes) < 0)
        return;
    int size = ::fcntl(d.pipe_write, F_GETPIPE_SZ);
    if (size > 0)
        d.capacity = static_cast<std::size_t>(size);
}

SpliceRelay::SpliceRelay(SpliceRelay&& other) noexcept
    : up_(other.up_), down_(other.down_)
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
    // A side that moved less than asked (or said EAGAIN) is not asked again
    // in this pump: level-triggered epoll reports it ready, and each retry
    // that only learns EAGAIN is a system call.
    bool source_blocked = false;
    bool destination_blocked = false;
    // Bounded so one busy direction cannot starve the event loop.
    for (int i = 0; i < 16; ++i) {
        bool step = false;
        if (!source_blocked && !d.source_eof && d.queued < d.capacity) {
            std::size_t want = d.capacity - d.queued;
            ssize_t n = ::splice(from, nullptr, d.pipe_write, nullptr, want, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                d.queued += static_cast<std::size_t>(n);
                step = true;
                source_blocked = static_cast<std::size_t>(n) < want;
                if (d.queued == d.capacity && !d.grown)
                    grow(d);
            } else if (n < 0 && errno == EAGAIN) {
                source_blocked = true;
            } else if (n == 0) {
                d.source_eof = true;
                step = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                error = std::string("splice from socket: ") + std::strerror(errno);
                return moved;
            }
        }
        if (!destination_blocked && d.queued > 0) {
            ssize_t n = ::splice(d.pipe_read, nullptr, to, nullptr, d.queued, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                destination_blocked = static_cast<std::size_t>(n) < d.queued;
                d.queued -= static_cast<std::size_t>(n);
                d.total += static_cast<std::uint64_t>(n);
                step = true;
            } else if (n < 0 && errno == EAGAIN) {
                destination_blocked = true;
            } else if (n < 0 && errno != EINTR) {
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
    if (!reading.source_eof && reading.queued < reading.capacity)
        events |= EPOLLIN;
    if (writing.queued > 0)
        events |= EPOLLOUT;
    return events;
}

std::uint32_t SpliceRelay::client_events() const noexcept { return events_for(up_, down_); }
std::uint32_t SpliceRelay::upstream_events() const noexcept { return events_for(down_, up_); }

} // namespace pinfold::proxy
