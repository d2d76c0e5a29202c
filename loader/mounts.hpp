#pragma once
// Building the sandbox's filesystem view inside its new mount namespace:
// the host root read-only, a private /tmp, a minimal /dev, the PID
// namespace's /proc, the workspace writable, hidden paths covered.

#include "sandbox_spec.hpp"

namespace pinfold::loader {

// Runs in the sandbox's first process, after clone and before exec: no
// allocation. `scratch_fds` has one slot per plan.mounts entry. Returns 0,
// or an errno with *failed_step set to the index of the step that failed
// (plan.mounts.size() for the final pivot_root).
[[nodiscard]] int build_sandbox_root(const SandboxPlan& plan, int* scratch_fds, int* failed_step) noexcept;

} // namespace pinfold::loader
