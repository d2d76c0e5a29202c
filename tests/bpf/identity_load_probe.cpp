// Loads pinfold's BPF programs exactly as `pinfold run` does, with the
// executable identity capture on or off (argv[1] = 1 or 0), and exits 0
// when the kernel accepted them. Run by tests/redteam/test_identity.py as an
// unprivileged uid with chosen capabilities: the capture-off choice must
// load with CAP_BPF + CAP_NET_ADMIN only on every kernel, the capture-on one
// must need CAP_PERFMON. Prints "capture=C load=0|1 unix=0|1" (unix: the
// unix-socket hooks were loaded too).
#include <cstdio>
#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "steering_programs.hpp"

int main(int argc, char** argv)
{
    if (argc != 2)
        return 2;
    // libbpf's verifier log goes to stderr at warn, where the test reads it.
    spdlog::set_default_logger(spdlog::stderr_color_st("probe"));
    bool capture = std::atoi(argv[1]) != 0;
    auto programs = pinfold::loader::SteeringPrograms::load(3, capture);
    if (!programs)
        std::fprintf(stderr, "%s\n", programs.error().what().c_str());
    std::printf("capture=%d load=%d unix=%d\n", capture ? 1 : 0, programs ? 0 : 1,
                programs && (*programs)->unix_hooks_loaded() ? 1 : 0);
    return programs ? 0 : 1;
}
