// When the proxy tries to read /proc/<pid>/exe for the audit's informative
// path: only where the kernel's ptrace access check could let it.
#include <doctest/doctest.h>

#include "proxy/connection_origin.hpp"

using pinfold::proxy::exe_link_readable;

TEST_CASE("the exe link of another uid's process is read only with CAP_SYS_PTRACE")
{
    constexpr std::uint32_t nobody = 65534;
    CHECK_FALSE(exe_link_readable(0, nobody, false));       // root sandbox, proxy as nobody
    CHECK_FALSE(exe_link_readable(64000, nobody, false));   // namespace sandbox uid
    CHECK(exe_link_readable(nobody, nobody, false));        // same uid: the kernel may allow it
    CHECK(exe_link_readable(1000, 1000, false));            // unprivileged run: proxy has the user's uid
    CHECK(exe_link_readable(0, nobody, true));
}
