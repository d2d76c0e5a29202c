#include "body_splice.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace pinfold::proxy {

Result<BodySplice> BodySplice::create()
{
    BodySplice s;
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return fail_errno("pipe for body splice");
    s.pipe_read_ = fds[0];
    s.pipe_write_ = fds[1];
    // A larger pipe means fewer wake-ups per body; the default (64 KiB)
    // when the limit for unprivileged pipes is reached.
    ::fcntl(s.pipe_write_, F_SETPIPE_SZ, 1 << 20);
    int size = ::fcntl(s.pipe_write_, F_GETPIPE_SZ);
    s.capacity_ = size > 0 ? static_cast<std::size_t>(size) : 65536;
    return s;
}

BodySplice::BodySplice(BodySplice&& other) noexcept
    : pipe_read_(other.pipe_read_), pipe_write_(other.pipe_write_), capacity_(other.capacity_),
      active_(other.active_), source_eof_(other.source_eof_), left_to_read_(other.left_to_read_), queued_(other.queued_),
      delivered_(other.delivered_)
{
    other.pipe_read_ = -1;
    other.pipe_write_ = -1;
    other.active_ = false;
}

BodySplice::~BodySplice()
{
    if (pipe_read_ >= 0)
        ::close(pipe_read_);
    if (pipe_write_ >= 0)
        ::close(pipe_write_);
}

void BodySplice::start(std::uint64_t length) noexcept
{
    active_ = true;
    source_eof_ = false;
    left_to_read_ = length;
    queued_ = 0;
    delivered_ = 0;
}

BodySplice::Step BodySplice::pump(int from, int to) noexcept
{
    Step s;
    // A side that said EAGAIN is not asked again in this pump: level-
    // triggered epoll says when it is ready, and each retry is a syscall.
    bool source_blocked = false;
    bool destination_blocked = false;
    // Bounded so one large body cannot starve the other connections.
    for (int i = 0; i < 16; ++i) {
        bool moved = false;
        if (!source_blocked && !source_eof_ && left_to_read_ > 0 && queued_ < capacity_) {
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left_to_read_, capacity_ - queued_));
            ssize_t n = ::splice(from, nullptr, pipe_write_, nullptr, want, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                left_to_read_ -= static_cast<std::uint64_t>(n);
                queued_ += static_cast<std::size_t>(n);
                moved = true;
                // Less than asked: the socket is drained (or the pipe's slots
                // are), and another try would only learn EAGAIN. Epoll is
                // level-triggered: it reports the next bytes.
                source_blocked = static_cast<std::size_t>(n) < want;
            } else if (n == 0) {
                source_eof_ = true;
            } else if (errno == EAGAIN) {
                source_blocked = true;
            } else if (errno != EINTR) {
                s.error = errno;
                return s;
            }
        }
        if (!destination_blocked && queued_ > 0) {
            // No SPLICE_F_MORE although more of the body may follow: TCP
            // would hold a partial segment back until the next send, and an
            // upstream that pauses would leave the client without the tail.
            ssize_t n = ::splice(pipe_read_, nullptr, to, nullptr, queued_, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (n > 0) {
                destination_blocked = static_cast<std::size_t>(n) < queued_;   // send buffer full
                queued_ -= static_cast<std::size_t>(n);
                delivered_ += static_cast<std::uint64_t>(n);
                moved = true;
            } else if (n < 0 && errno == EAGAIN) {
                destination_blocked = true;
            } else if (n < 0 && errno != EINTR) {
                s.error = errno;
                return s;
            }
        }
        s.progress = s.progress || moved;
        if (!moved)
            break;
    }
    return s;
}

} // namespace pinfold::proxy
