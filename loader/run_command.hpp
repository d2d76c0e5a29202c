#pragma once
// `pinfold run`: load and attach, start the proxy, run the command in
// its sandbox cgroup, tear everything down on every way out.

#include "options.hpp"

namespace pinfold::loader {

// Exit code: the command's (128 + signal if it was killed), 125 when
// pinfold itself failed, 126/127 when the command cannot be executed.
[[nodiscard]] int run_sandbox(const RunOptions& options);

// `pinfold check`: 0 when every file is a valid policy, 1 otherwise.
[[nodiscard]] int check_policies(const CheckOptions& options);

} // namespace pinfold::loader
