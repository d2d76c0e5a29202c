#include "steering_programs.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

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
    btf* vmlinux = btf__load_vmlinux_btf();
    if (!vmlinux)
        return -1;
    int value = -1;
    int id = btf__find_by_name_kind(vmlinux, "bpf_attach_type", BTF_KIND_ENUM);
    if (id > 0) {
        const btf_type* t = btf__type_by_id(vmlinux, static_cast<__u32>(id));
        const struct btf_enum* e = ::btf_enum(t);
        for (unsigned i = 0; i < btf_vlen(t); ++i, ++e) {
            if (std::strcmp(btf__name_by_offset(vmlinux, e->name_off), name) == 0)
                value = e->val;
        }
    }
    btf__free(vmlinux);
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
    self->skel_->rodata->pf_capture_exe = capture_exe ? 1 : 0;
    // Reading an abstract unix address needs the same CAP_PERFMON (lib/unix.h).
    self->skel_->rodata->pf_read_sun_path = capture_exe ? 1 : 0;
    // Abstract unix sockets (Linux 6.7 hooks): retargeted, or not loaded.
    for (auto [prog, name] : {std::pair{self->skel_->progs.pf_connect_unix, "BPF_CGROUP_UNIX_CONNECT"},
                              std::pair{self->skel_->progs.pf_sendmsg_unix, "BPF_CGROUP_UNIX_SENDMSG"}}) {
        int type = kernel_attach_type(name);
        if (type < 0) {
            log()->warn("this kernel has no {}: abstract unix sockets are not refused by the hooks", name);
            bpf_program__set_autoload(prog, false);
        } else {
            bpf_program__set_expected_attach_type(prog, static_cast<bpf_attach_type>(type));
        }
    }
    if (int err = pinfold_bpf__load(self->skel_); err != 0)
        return fail("load BPF programs (needs CAP_BPF and CAP_NET_ADMIN; the verifier log is above)", -err);
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
    bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
    if (!link)
        return fail_errno(std::string("attach ") + bpf_program__name(prog) + " to cgroup");
    // No pin path: container mode, without a writable bpffs.
    if (int err = pin_path.empty() ? 0 : bpf_link__pin(link, pin_path.c_str()); err != 0) {
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
        {skel_->progs.pf_connect4, "connect4"},
        {skel_->progs.pf_connect6, "connect6"},
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
    for (const auto& hook : hooks) {
        if (auto r = attach(hook.prog, cgroup_fd, pin_dir.empty() ? "" : pin_dir + "/sandbox_" + hook.name); !r)
            return r;
    }
    for (auto [prog, name] : {std::pair{skel_->progs.pf_connect_unix, "connect_unix"},
                              std::pair{skel_->progs.pf_sendmsg_unix, "sendmsg_unix"}}) {
        if (!bpf_program__autoload(prog))
            continue;
        if (auto r = attach(prog, cgroup_fd, pin_dir.empty() ? "" : pin_dir + "/sandbox_" + name); !r)
            return r;
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
}

void remove_pin_dir(const std::string& pin_dir) noexcept
{
    std::error_code ec;
    std::filesystem::remove_all(pin_dir, ec);
    if (ec)
        log()->warn("could not remove stale pins in {}: {}", pin_dir, ec.message());
}

} // namespace pinfold::loader
