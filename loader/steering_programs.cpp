#include "steering_programs.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "core_btf_cache.hpp"
#include "pinfold_bpf.skel.h"
#include "pinfold/abi_checks.hpp"

namespace pinfold::loader {

namespace {

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("loader");
        return l ? l : spdlog::default_logger()->clone("loader");
    }();
    return logger;
}

int libbpf_to_spdlog(enum libbpf_print_level level, const char* format, va_list args)
{
    // Verifier logs arrive as one long string: size the buffer to fit.
    va_list copy;
    va_copy(copy, args);
    int n = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (n <= 0)
        return n;
    std::string buf(static_cast<std::size_t>(n) + 1, '\0');
    std::vsnprintf(buf.data(), buf.size(), format, args);
    std::string_view text(buf.data(), static_cast<std::size_t>(n));
    while (!text.empty() && text.back() == '\n')
        text.remove_suffix(1);
    if (text.starts_with("libbpf: "))
        text.remove_prefix(8);   // ours below says it already
    // libbpf's own chatter is debug material; its warnings (verifier logs
    // of a failed load) matter enough to show at warn.
    if (level == LIBBPF_WARN)
        log()->warn("libbpf: {}", text);
    else
        log()->debug("libbpf: {}", text);
    return n;
}

int on_ring_event(void* ctx, void* data, size_t size)
{
    auto* self = static_cast<SteeringPrograms::EventHandler*>(ctx);
    if (size < sizeof(pf_event))
        return 0;
    pf_event event{};
    std::memcpy(&event, data, sizeof event);
    (*self)(event);
    return 0;
}

// The attach types of the unix-socket hooks (Linux 6.7); libbpf 1.1's
// headers predate them. Their values are UAPI (include/uapi/linux/bpf.h).
constexpr int unix_connect_type = 49;   // BPF_CGROUP_UNIX_CONNECT
constexpr int unix_sendmsg_type = 50;   // BPF_CGROUP_UNIX_SENDMSG

// Whether the kernel takes sock_addr programs of `attach_type`: a kernel
// that does not know the type refuses any such program with EINVAL. A
// two-instruction program instead of a lookup in the kernel's BTF, whose
// parse (megabytes through sysfs) is the dearest part of the start; libbpf
// parses it once for the object's CO-RE relocations already. 1 when it
// does, 0 when not, else -errno.
int kernel_has_sock_addr_type(int attach_type)
{
    const bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 1},
        {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
    };
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = static_cast<bpf_attach_type>(attach_type));
    int fd = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "pf_probe", "Dual BSD/GPL", insns, std::size(insns), &opts);
    if (fd >= 0) {
        ::close(fd);
        return 1;
    }
    return errno == EINVAL ? 0 : -errno;
}

std::unexpected<Error> load_failure(bool capture_exe, int err)
{
    // Kernels before 6.13 (6.12.5 stable), Debian's 6.1 among them,
    // refuse narrow stack writes next to spilled scalars for a loader
    // without CAP_PERFMON: "attempt to corrupt spilled pointer on stack".
    return fail(std::string("load BPF programs (needs CAP_BPF and CAP_NET_ADMIN") +
                    (capture_exe ? "" : ", and CAP_PERFMON on kernels before 6.13 such as Debian's 6.1") +
                    "; the verifier log is above)",
                err);
}

} // namespace

Result<std::unique_ptr<SteeringPrograms>> SteeringPrograms::load(unsigned sandbox_level, bool capture_exe,
                                                                 const std::string& btf_cache_dir)
{
    libbpf_set_print(libbpf_to_spdlog);
    if (!btf_cache_dir.empty()) {
        std::size_t size = 0;
        const void* elf = pinfold_bpf__elf_bytes(&size);
        if (auto core_btf = CoreBtf::find_or_make(btf_cache_dir, {static_cast<const unsigned char*>(elf), size})) {
            auto loaded = load_with(sandbox_level, capture_exe, core_btf->path().c_str());
            if (loaded)
                return loaded;
            // Not expected; the whole BTF decides then.
            log()->warn("loading with the kernel BTF subset in {} failed ({}); loading with the whole kernel BTF",
                        btf_cache_dir, loaded.error().what());
        }
    }
    return load_with(sandbox_level, capture_exe, nullptr);
}

Result<std::unique_ptr<SteeringPrograms>> SteeringPrograms::load_with(unsigned sandbox_level, bool capture_exe,
                                                                      const char* kernel_btf_path)
{
    std::unique_ptr<SteeringPrograms> self(new SteeringPrograms());
    // libbpf reads kernel_btf_path (a checked fd's /proc path) during the load below.
    LIBBPF_OPTS(bpf_object_open_opts, open_opts, .btf_custom_path = kernel_btf_path);
    self->skel_ = pinfold_bpf__open_opts(&open_opts);
    if (!self->skel_)
        return fail_errno("open BPF skeleton");
    self->skel_->rodata->pf_sandbox_level = sandbox_level;
    // An LRU map hands each CPU free elements 128 at a time, so with many
    // CPUs a small one evicts long before it is full: at least 256 per
    // possible CPU (bpf/lib/maps.h has the sizes and why eviction is safe).
    if (int cpus = libbpf_num_possible_cpus(); cpus > 0) {
        for (bpf_map* lru : {self->skel_->maps.flow_map, self->skel_->maps.local_flow_map})
            if (bpf_map__max_entries(lru) < 256u * static_cast<unsigned>(cpus))
                bpf_map__set_max_entries(lru, 256u * static_cast<unsigned>(cpus));
    }
    // One variant of each connect program is loaded (pinfold.bpf.c), so a
    // loader without CAP_PERFMON never shows the verifier the capture's
    // helpers, not even on a dead branch (6.1/6.12 walk those speculatively).
    auto& progs = self->skel_->progs;
    bpf_program__set_autoload(progs.pf_connect4_exe, capture_exe);
    bpf_program__set_autoload(progs.pf_connect6_exe, capture_exe);
    bpf_program__set_autoload(progs.pf_connect4, !capture_exe);
    bpf_program__set_autoload(progs.pf_connect6, !capture_exe);
    self->connect4_ = capture_exe ? progs.pf_connect4_exe : progs.pf_connect4;
    self->connect6_ = capture_exe ? progs.pf_connect6_exe : progs.pf_connect6;
    // The unix-socket hooks: only where the kernel has them and we hold
    // CAP_PERFMON (bpf/lib/unix.h); else the verifier never sees them.
    int has_connect = kernel_has_sock_addr_type(unix_connect_type);
    int has_sendmsg = has_connect < 0 ? has_connect : kernel_has_sock_addr_type(unix_sendmsg_type);
    if (has_sendmsg < 0)
        return load_failure(capture_exe, -has_sendmsg);
    const char* no_unix_hooks = nullptr;
    if (!has_connect || !has_sendmsg)
        no_unix_hooks = "this kernel has no cgroup connect_unix/sendmsg_unix hooks (Linux 6.7): abstract unix "
                        "sockets of the host are not refused by the BPF hooks (docs/kernel-support.md)";
    else if (!capture_exe)
        no_unix_hooks = "abstract unix sockets of the host are not refused by the BPF hooks: reading their "
                        "address needs CAP_PERFMON (docs/kernel-support.md)";
    self->unix_hooks_ = no_unix_hooks == nullptr;
    bpf_program__set_autoload(progs.pf_connect_unix, self->unix_hooks_);
    bpf_program__set_autoload(progs.pf_sendmsg_unix, self->unix_hooks_);
    bpf_program__set_expected_attach_type(progs.pf_connect_unix, static_cast<bpf_attach_type>(unix_connect_type));
    bpf_program__set_expected_attach_type(progs.pf_sendmsg_unix, static_cast<bpf_attach_type>(unix_sendmsg_type));
    if (int err = pinfold_bpf__load(self->skel_); err != 0)
        return load_failure(capture_exe, -err);
    if (no_unix_hooks)
        log()->warn("{}", no_unix_hooks);
    return self;
}

SteeringPrograms::~SteeringPrograms()
{
    detach_all();
    if (events_)
        ring_buffer__free(events_);
    if (skel_)
        pinfold_bpf__destroy(skel_);
}

Result<void> SteeringPrograms::attach(::bpf_program* prog, int cgroup_fd, const std::string& pin_path)
{
    if (pin_path.empty()) {
        // Container mode (no writable bpffs): see attachments_.
        int owned = ::fcntl(cgroup_fd, F_DUPFD_CLOEXEC, 0);
        if (owned < 0)
            return fail_errno("duplicate the cgroup fd");
        auto type = bpf_program__expected_attach_type(prog);
        if (bpf_prog_attach(bpf_program__fd(prog), owned, type, BPF_F_ALLOW_MULTI) != 0) {
            int err = errno;
            ::close(owned);
            return fail(std::string("attach ") + bpf_program__name(prog) + " to cgroup", err);
        }
        attachments_.push_back({bpf_program__fd(prog), owned, static_cast<int>(type)});
        return {};
    }
    bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
    if (!link)
        return fail_errno(std::string("attach ") + bpf_program__name(prog) + " to cgroup");
    if (int err = bpf_link__pin(link, pin_path.c_str()); err != 0) {
        bpf_link__destroy(link);
        return fail("pin link " + pin_path, -err);
    }
    links_.emplace_back(link, pin_path);
    return {};
}

Result<void> SteeringPrograms::attach_sandbox(int cgroup_fd, const std::string& pin_dir)
{
    struct {
        bpf_program* prog;
        const char* name;
    } const hooks[] = {
        {skel_->progs.pf_sock_create, "sock_create"},
        {skel_->progs.pf_sockops, "sockops"},
        {connect4_, "connect4"},
        {connect6_, "connect6"},
        {skel_->progs.pf_sendmsg4, "sendmsg4"},
        {skel_->progs.pf_sendmsg6, "sendmsg6"},
        {skel_->progs.pf_recvmsg4, "recvmsg4"},
        {skel_->progs.pf_recvmsg6, "recvmsg6"},
        {skel_->progs.pf_bind4, "bind4"},
        {skel_->progs.pf_bind6, "bind6"},
        {skel_->progs.pf_post_bind4, "post_bind4"},
        {skel_->progs.pf_post_bind6, "post_bind6"},
        {skel_->progs.pf_skb_egress, "skb_egress"},
        {skel_->progs.pf_skb_ingress, "skb_ingress"},
    };
    if (pin_dir.empty()) {
        // A pinfold killed in this container left its programs attached
        // (attachments_); ours would run after them and see only their
        // rewritten destination.
        __u32 count = 0;
        if (bpf_prog_query(cgroup_fd, BPF_CGROUP_INET4_CONNECT, 0, nullptr, nullptr, &count) != 0)
            return fail_errno("query the programs attached to the container's cgroup");
        if (count != 0)
            return fail("container mode: connect programs are already attached to this container's cgroup (a "
                        "pinfold that was killed here keeps the container's network closed, or another tool "
                        "steers it); start a new container", EEXIST);
    }
    for (const auto& hook : hooks) {
        if (auto r = attach(hook.prog, cgroup_fd, pin_dir.empty() ? "" : pin_dir + "/sandbox_" + hook.name); !r)
            return r;
    }
    if (unix_hooks_) {
        for (auto [prog, name] : {std::pair{skel_->progs.pf_connect_unix, "connect_unix"},
                                  std::pair{skel_->progs.pf_sendmsg_unix, "sendmsg_unix"}}) {
            if (auto r = attach(prog, cgroup_fd, pin_dir.empty() ? "" : pin_dir + "/sandbox_" + name); !r)
                return r;
        }
    }
    return {};
}

Result<void> SteeringPrograms::attach_proxy(int cgroup_fd, const std::string& pin_dir)
{
    return attach(skel_->progs.pf_sockops, cgroup_fd, pin_dir + "/proxy_sockops");
}

Result<void> SteeringPrograms::configure_sandbox(std::uint64_t sandbox_id, const pf_sandbox_config& config)
{
    if (bpf_map__update_elem(skel_->maps.sandbox_map, &sandbox_id, sizeof sandbox_id, &config, sizeof config,
                             BPF_ANY) != 0)
        return fail_errno("update sandbox_map");
    return {};
}

void SteeringPrograms::remove_sandbox(std::uint64_t sandbox_id) noexcept
{
    bpf_map__delete_elem(skel_->maps.sandbox_map, &sandbox_id, sizeof sandbox_id, 0);
}

int SteeringPrograms::origin_map_fd() const noexcept { return bpf_map__fd(skel_->maps.origin_map); }

int SteeringPrograms::exempt_map_fd() const noexcept { return bpf_map__fd(skel_->maps.exempt_map); }

Result<void> SteeringPrograms::open_events(EventHandler handler)
{
    handler_ = std::move(handler);
    events_ = ring_buffer__new(bpf_map__fd(skel_->maps.events_map), on_ring_event, &handler_, nullptr);
    if (!events_)
        return fail_errno("open events ring buffer");
    return {};
}

int SteeringPrograms::events_fd() const noexcept { return events_ ? ring_buffer__epoll_fd(events_) : -1; }

void SteeringPrograms::drain_events() noexcept
{
    if (events_)
        ring_buffer__consume(events_);
}

void SteeringPrograms::detach_all() noexcept
{
    // Unpin first: a pinned link survives the destroy below.
    for (auto& [link, pin] : links_) {
        bpf_link__unpin(link);
        bpf_link__destroy(link);
    }
    links_.clear();
    for (const auto& a : attachments_) {
        if (bpf_prog_detach2(a.prog_fd, a.cgroup_fd, static_cast<bpf_attach_type>(a.type)) != 0)
            log()->warn("could not detach a program from the container's cgroup: {} (the container keeps no "
                        "network)", std::strerror(errno));
        ::close(a.cgroup_fd);
    }
    attachments_.clear();
}

void SteeringPrograms::keep_attached() noexcept
{
    // Closing a pinned link's fd does not detach it; an attachment without
    // a link holds its own reference to the program.
    for (auto& [link, pin] : links_)
        bpf_link__destroy(link);
    links_.clear();
    for (const auto& a : attachments_)
        ::close(a.cgroup_fd);
    attachments_.clear();
}

void remove_pin_dir(const std::string& pin_dir) noexcept
{
    std::error_code ec;
    std::filesystem::remove_all(pin_dir, ec);
    if (ec)
        log()->warn("could not remove stale pins in {}: {}", pin_dir, ec.message());
}

} // namespace pinfold::loader
