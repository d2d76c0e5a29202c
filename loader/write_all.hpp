#pragma once
// write() until every byte is out: a regular file or memfd may still take
// a write in parts, and a signal may interrupt it.

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// `what` names the file for the error ("write " + what).
[[nodiscard]] inline Result<void> write_all(int fd, const void* data, std::size_t size, const std::string& what)
{
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail_errno("write " + what);
        p += n;
        size -= static_cast<std::size_t>(n);
    }
    return {};
}

} // namespace pinfold::loader
