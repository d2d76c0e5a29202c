#pragma once
// Whether pinfold can attest executable identity in the kernel, and what a
// policy with `binaries:` rules may do without it (docs/identity.md).

#include <string>

#include "pinfold/error.hpp"
#include "policy/policy.hpp"

namespace pinfold::loader {

// True when this process may load the connect-time capture: it calls
// bpf_get_current_task_btf() and bpf_probe_read_kernel(), which the verifier
// allows only with CAP_PERFMON (or CAP_SYS_ADMIN) in the effective set.
[[nodiscard]] bool exe_capture_permitted() noexcept;

// "'a' (line 3), 'b' (line 9)": the rules that name binaries, "" if none.
[[nodiscard]] std::string rules_with_binaries(const policy::Policy& policy);

// The sandbox's PATH: ours, as the sandbox keeps it, or the default the
// sandbox sets when we have none.
[[nodiscard]] policy::BinarySearch sandbox_binary_search();

// Refuses (an error naming the rules) a policy with binaries when identity
// cannot be captured, unless degraded identity was allowed.
[[nodiscard]] Result<void> check_identity_capability(const policy::Policy& policy, bool captured,
                                                     bool allow_degraded);

} // namespace pinfold::loader
