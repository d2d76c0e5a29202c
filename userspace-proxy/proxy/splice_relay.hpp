#pragma once
// Pass-through: bytes from one socket to the other through a pipe with
// splice(), never copied into the proxy's memory and never decrypted.

#include <cstddef>
#include <cstdint>
#include <string>

#include "pinfold/error.hpp"

namespace pinfold::proxy {

class SpliceRelay {
public:
    [[nodiscard]] static Result<SpliceRelay> create();
    SpliceRelay(SpliceRelay&& other) noexcept;
    SpliceRelay(const SpliceRelay&) = delete;
    SpliceRelay& operator=(const SpliceRelay&) = delete;
    SpliceRelay& operator=(SpliceRelay&&) = delete;
    ~SpliceRelay();

    struct Step {
        bool progress = false;
        bool done = false;      // both directions finished
        std::string error;      // non-empty: the relay failed
    };
    // Moves what both (non-blocking) sockets allow right now.
    Step pump(int client, int upstream) noexcept;

    // epoll interest for each socket given what is queued.
    [[nodiscard]] std::uint32_t client_events() const noexcept;
    [[nodiscard]] std::uint32_t upstream_events() const noexcept;

    [[nodiscard]] std::uint64_t bytes_to_upstream() const noexcept { return up_.total; }
    [[nodiscard]] std::uint64_t bytes_to_client() const noexcept { return down_.total; }

private:
    struct Direction {
        int pipe_read = -1;
        int pipe_write = -1;
        std::size_t capacity = 0;
        bool grown = false;       // a growth was tried (it may have been refused)
        std::size_t queued = 0;   // bytes sitting in the pipe
        std::uint64_t total = 0;
        bool source_eof = false;
        bool shut = false;        // SHUT_WR sent to the destination
    };
    SpliceRelay() = default;
    static void grow(Direction& d) noexcept;
    bool move(int from, int to, Direction& d, std::string& error) noexcept;
    [[nodiscard]] std::uint32_t events_for(const Direction& reading, const Direction& writing) const noexcept;

    Direction up_;     // client -> upstream
    Direction down_;   // upstream -> client
};

} // namespace pinfold::proxy
