#pragma once
// The one error type of pinfold. Recoverable failures return
// Result<T>; exceptions are reserved for start-up and caught in main.

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

namespace pinfold {

struct Error {
    int code = 0;          // errno, or 0 when the failure is not a syscall's
    std::string message;   // says what failed and on what (file, field, ...)

    [[nodiscard]] std::string what() const
    {
        if (code == 0)
            return message;
        return message + ": " + std::strerror(code);
    }
};

template <typename T>
using Result = std::expected<T, Error>;

[[nodiscard]] inline std::unexpected<Error> fail(std::string message, int code = 0)
{
    return std::unexpected(Error{code, std::move(message)});
}

// For a syscall that just failed: captures errno before anything else runs.
[[nodiscard]] inline std::unexpected<Error> fail_errno(std::string message)
{
    int saved = errno;
    return std::unexpected(Error{saved, std::move(message)});
}

} // namespace pinfold
