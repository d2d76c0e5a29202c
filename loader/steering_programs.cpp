#include "steering_programs.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "pinfold_bpf.skel.h"
#include "unix_bpf.skel.h"
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

// The value of an attach type this libbpf's headers may not name, from the
// running kernel's BTF; -1 when the kernel has no such attach type.
int kernel_attach_type(const char* name)
{
    // Parsed once per process: the kernel's BTF is megabytes, and parsing
    // it for each name was most of `pinfold run`'s start-up.
    static const std::unique_ptr<btf, void (*)(btf*)> vmlinux(btf__load_vmlinux_btf(), btf__free);
    if (!vmlinux)
        return -1;
    int value = -1;
    int id = btf__find_by_name_kind(vmlinux.get(), "bpf_attach_type", BTF_KIND_ENUM);
    if (id > 0) {
        const btf_type* t = btf__type_by_id(vmlinux.get(), static_cast<__u32>(id));
        const struct btf_enum* e = ::btf_enum(t);
        for (unsigned i = 0; i < btf_vlen(t); ++i, ++e) {
            if (std::strcmp(btf__name_by_offset(vmlinux.get(), e->name_off), name) == 0)
                value = e->val;
        }
    }
    return value;
}

} // namespace

Result<std::unique_ptr<SteeringPrograms>> SteeringPrograms::load(unsigned sandbox_level, bool capture_exe)
{
    libbpf_set_print(libbpf_to_spdlog);
    std::unique_ptr<SteeringPrograms> self(new SteeringPrograms());
    self->skel_ = pinfold_bpf__open();
    if (!self->skel_)
        return fail_errno("open BPF skeleton");
    self->skel_->rodata->pf_sandbox_level = sandbox_level;
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
    if (int err = pinfold_bpf__load(self->skel_); err != 0) {
        // Kernels before 6.13 (6.12.5 stable), Debian's 6.1 among them,
        // refuse narrow stack writes next to spilled scalars for a loader
        // without CAP_PERFMON: "attempt to corrupt spilled pointer on stack".
        return fail(std::string("load BPF programs (needs CAP_BPF and CAP_NET_ADMIN") +
                        (capture_exe ? "" : ", and CAP_PERFMON on kernels before 6.13 such as Debian's 6.1") +
                        "; the verifier log is above)",
                    -err);
    }
    if (auto r = self->load_unix_hooks(sandbox_level, capture_exe); !r)
        return std::unexpected(r.error());
    return self;
}

Result<void> SteeringPrograms::load_unix_hooks(unsigned sandbox_level, bool perfmon)
{
    int connect_type = kernel_attach_type("BPF_CGROUP_UNIX_CONNECT");
    int sendmsg_type = kernel_attach_type("BPF_CGROUP_UNIX_SENDMSG");
    if (connect_type < 0 || sendmsg_type < 0) {
        log()->warn("this kernel has no cgroup connect_unix/sendmsg_unix hooks (Linux 6.7): abstract unix "
                    "sockets of the host are not refused by the BPF hooks (docs/kernel-support.md)");
        return {};
    }
    if (!perfmon) {
        log()->warn("abstract unix sockets of the host are not refused by the BPF hooks: reading their "
                    "address needs CAP_PERFMON (docs/kernel-support.md)");
        return {};
    }
    unix_bpf* skel = unix_bpf__open();
    if (!skel)
        return fail_errno("open the unix-socket BPF skeleton");
    skel->rodata->pf_sandbox_level = sandbox_level;
    bpf_program__set_expected_attach_type(skel->progs.pf_connect_unix, static_cast<bpf_attach_type>(connect_type));
    bpf_program__set_expected_attach_type(skel->progs.pf_sendmsg_unix, static_cast<bpf_attach_type>(sendmsg_type));
    // The same maps as the steering object: its refusals reach the same ring.
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, skel->obj)
    {
        if (bpf_map__is_internal(map))
            continue;
        const bpf_map* ours = bpf_object__find_map_by_name(skel_->obj, bpf_map__name(map));
        if (!ours || bpf_map__reuse_fd(map, bpf_map__fd(ours)) != 0) {
            unix_bpf__destroy(skel);
            return fail(std::string("share map ") + bpf_map__name(map) + " with the unix-socket hooks", EINVAL);
        }
    }
    if (int err = unix_bpf__load(skel); err != 0) {
        unix_bpf__destroy(skel);
        return fail("load the unix-socket BPF programs (the verifier log is above)", -err);
    }
    unix_skel_ = skel;
    return {};
}

SteeringPrograms::~SteeringPrograms()
{
    detach_all();
    if (events_)
        ring_buffer__free(events_);
    if (unix_skel_)
        unix_bpf__destroy(unix_skel_);
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
    if (unix_skel_) {
        for (auto [prog, name] : {std::pair{unix_skel_->progs.pf_connect_unix, "connect_unix"},
                                  std::pair{unix_skel_->progs.pf_sendmsg_unix, "sendmsg_unix"}}) {
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
