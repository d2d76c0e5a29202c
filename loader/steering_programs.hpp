#pragma once
// The loaded steering programs (bpf/pinfold.bpf.c) and their maps. libbpf
// types stay behind this class; the rest of pinfold sees fds and ids.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pinfold/error.hpp"
#include "pinfold_abi.h"

struct pinfold_bpf;   // skeleton
struct bpf_program;
struct bpf_link;
struct ring_buffer;

namespace pinfold::loader {

class SteeringPrograms {
public:
    using EventHandler = std::function<void(const pf_event&)>;

    // Loads the embedded object. `sandbox_level` is the depth below the
    // cgroup2 root at which sandbox cgroups live. `capture_exe` (the caller
    // has CAP_PERFMON) loads the connect programs that capture executable
    // identity (bpf/lib/identity.h) and, on a kernel with the hooks, the
    // unix-socket programs (bpf/lib/unix.h); with false, the connect programs
    // that never name the PERFMON helpers load instead, and no unix hooks.
    // `btf_cache_dir`: where the kernel BTF subset for the relocations is
    // kept (core_btf_cache.hpp); empty: none, libbpf reads the whole BTF.
    [[nodiscard]] static Result<std::unique_ptr<SteeringPrograms>> load(unsigned sandbox_level,
                                                                        bool capture_exe = false,
                                                                        const std::string& btf_cache_dir = {});

    // Whether abstract unix sockets are refused by the hooks; when not,
    // load() said why at warn level.
    [[nodiscard]] bool unix_hooks_loaded() const noexcept { return unix_hooks_; }
    ~SteeringPrograms();
    SteeringPrograms(const SteeringPrograms&) = delete;
    SteeringPrograms& operator=(const SteeringPrograms&) = delete;

    // Attaches every sandbox hook to the cgroup as links pinned in
    // `pin_dir`, so enforcement outlives a crash of ours. An empty
    // `pin_dir` (container mode, no bpffs): link-less multi attachments
    // (attachments_), which only a holder of the program's fd can detach.
    [[nodiscard]] Result<void> attach_sandbox(int cgroup_fd, const std::string& pin_dir);
    // Attaches the accept-side sockops program to the proxy's cgroup.
    [[nodiscard]] Result<void> attach_proxy(int cgroup_fd, const std::string& pin_dir);

    [[nodiscard]] Result<void> configure_sandbox(std::uint64_t sandbox_id, const pf_sandbox_config& config);
    void remove_sandbox(std::uint64_t sandbox_id) noexcept;

    [[nodiscard]] int origin_map_fd() const noexcept;
    // Container mode: the proxy marks its own sockets here (bpf/lib/exempt.h).
    [[nodiscard]] int exempt_map_fd() const noexcept;

    // Refusal events from the kernel: an fd to poll, and a drain call.
    [[nodiscard]] Result<void> open_events(EventHandler handler);
    [[nodiscard]] int events_fd() const noexcept;
    void drain_events() noexcept;

    // Detaches: unpins and destroys every link, detaches every link-less
    // attachment. Also run by the destructor.
    void detach_all() noexcept;

    // Leaves every attachment in place when this object goes (pinned links
    // stay pinned, link-less attachments stay): for processes that
    // outlived the run and must stay policed.
    void keep_attached() noexcept;

private:
    SteeringPrograms() = default;
    [[nodiscard]] static Result<std::unique_ptr<SteeringPrograms>> load_with(unsigned sandbox_level,
                                                                            bool capture_exe,
                                                                            const char* kernel_btf_path);
    [[nodiscard]] Result<void> attach(::bpf_program* prog, int cgroup_fd, const std::string& pin_path);

    struct pinfold_bpf* skel_ = nullptr;
    bool unix_hooks_ = false;   // pf_connect_unix and pf_sendmsg_unix were loaded
    ::bpf_program* connect4_ = nullptr;   // the variant that was loaded
    ::bpf_program* connect6_ = nullptr;
    std::vector<std::pair<bpf_link*, std::string>> links_;
    // Container mode has no bpffs to pin links in. A link dies with the fd
    // of the process that made it, and the job (same uid) can kill that
    // process; an attachment without a link stays until it is detached with
    // CAP_NET_ADMIN, which the job lacks. So a killed pinfold leaves the
    // container steered into a proxy that is gone: no network, not free
    // network.
    struct Attachment {
        int prog_fd;
        int cgroup_fd;   // a dup, owned
        int type;       // enum bpf_attach_type (kept out of this header)
    };
    std::vector<Attachment> attachments_;
    ring_buffer* events_ = nullptr;
    EventHandler handler_;
};

// Removes the pinned links of a crashed run (which detaches them).
void remove_pin_dir(const std::string& pin_dir) noexcept;

} // namespace pinfold::loader
