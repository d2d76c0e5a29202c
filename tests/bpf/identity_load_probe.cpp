// Loads pinfold's BPF object with the executable identity capture on or off
// (argv[1] = 1 or 0) and exits 0 when the kernel accepted it. Run by
// tests/redteam/test_identity.py as an unprivileged uid with chosen
// capabilities: the capture-off variant must load with CAP_BPF +
// CAP_NET_ADMIN only, the capture-on one must need CAP_PERFMON.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include <bpf/libbpf.h>

#include "pinfold_bpf.skel.h"

namespace {

int print_warnings(enum libbpf_print_level level, const char* format, va_list args)
{
    return level == LIBBPF_WARN ? std::vfprintf(stderr, format, args) : 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
        return 2;
    libbpf_set_print(print_warnings);
    pinfold_bpf* skel = pinfold_bpf__open();
    if (!skel)
        return 2;
    skel->rodata->pf_sandbox_level = 3;
    skel->rodata->pf_capture_exe = std::atoi(argv[1]) != 0;
    int err = pinfold_bpf__load(skel);
    std::printf("capture=%s load=%d\n", argv[1], err);
    pinfold_bpf__destroy(skel);
    return err == 0 ? 0 : 1;
}
