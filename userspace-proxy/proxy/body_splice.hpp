#pragma once
// A message body of known length moved from one socket to the other
// through a pipe with splice(): the bytes never enter the proxy's memory,
// and nothing is copied or erased from the front of a buffer. Used for
// large plain-HTTP response bodies once their head has been checked and
// forwarded; the framing stays exact because no more than the body's
// remaining length is ever taken from the source.

#include <cstdint>

#include "pinfold/error.hpp"

namespace pinfold::proxy {

class BodySplice {
public:
    [[nodiscard]] static Result<BodySplice> create();
    BodySplice(BodySplice&& other) noexcept;
    BodySplice(const BodySplice&) = delete;
    BodySplice& operator=(const BodySplice&) = delete;
    BodySplice& operator=(BodySplice&&) = delete;
    ~BodySplice();

    // Starts a body of `length` bytes (the pipe must be empty).
    void start(std::uint64_t length) noexcept;

    struct Step {
        bool progress = false;
        int error = 0;             // errno of a failed splice
    };
    // Moves what both non-blocking sockets allow right now, bounded.
    Step pump(int from, int to) noexcept;

    [[nodiscard]] bool active() const noexcept { return active_; }
    // Every byte of the body has been delivered to the destination.
    [[nodiscard]] bool done() const noexcept { return active_ && left_to_read_ == 0 && queued_ == 0; }
    void finish() noexcept { active_ = false; }
    // The source closed before the body ended; what it sent is still
    // delivered first.
    [[nodiscard]] bool source_closed() const noexcept { return source_eof_; }
    [[nodiscard]] bool drained() const noexcept { return queued_ == 0; }
    [[nodiscard]] bool wants_source() const noexcept
    {
        return active_ && !source_eof_ && left_to_read_ > 0 && queued_ < capacity_;
    }
    [[nodiscard]] bool wants_destination() const noexcept { return active_ && queued_ > 0; }
    [[nodiscard]] std::uint64_t delivered() const noexcept { return delivered_; }

private:
    BodySplice() = default;

    int pipe_read_ = -1;
    int pipe_write_ = -1;
    std::size_t capacity_ = 0;
    bool active_ = false;
    bool source_eof_ = false;
    std::uint64_t left_to_read_ = 0;   // body bytes still in the source socket
    std::size_t queued_ = 0;           // bytes sitting in the pipe
    std::uint64_t delivered_ = 0;      // of this body, to the destination
};

} // namespace pinfold::proxy
