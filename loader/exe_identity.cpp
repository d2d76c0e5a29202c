#include "exe_identity.hpp"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

namespace pinfold::loader {

namespace {

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif

bool has_effective(const __user_cap_data_struct (&data)[2], int cap)
{
    return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

} // namespace

bool exe_capture_permitted() noexcept
{
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0)
        return false;
    return has_effective(data, CAP_PERFMON) || has_effective(data, CAP_SYS_ADMIN);
}

std::string rules_with_binaries(const policy::Policy& policy)
{
    std::string out;
    for (const auto& rule : policy.rules) {
        if (rule.binaries.empty())
            continue;
        out += (out.empty() ? "'" : ", '") + rule.name + "' (line " + std::to_string(rule.line) + ")";
    }
    return out;
}

policy::BinarySearch sandbox_binary_search()
{
    const char* path = std::getenv("PATH");
    return policy::search_from_path_variable(path ? path : "/usr/local/bin:/usr/bin:/bin");
}

Result<void> check_identity_capability(const policy::Policy& policy, bool captured, bool allow_degraded)
{
    if (captured || allow_degraded)
        return {};
    std::string rules = rules_with_binaries(policy);
    if (rules.empty())
        return {};
    return fail(policy.source + ": rule(s) " + rules +
                " restrict binaries, but executable identity cannot be captured at connect time (loading "
                "the capture needs CAP_PERFMON); refusing to start rather than let any program use them. "
                "Give pinfold CAP_PERFMON, or pass --allow-degraded-identity to accept a weaker, "
                "after-the-fact check (docs/identity.md)");
}

} // namespace pinfold::loader
