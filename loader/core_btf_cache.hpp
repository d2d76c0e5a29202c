#pragma once
// libbpf relocates the programs' reads of kernel structures (CO-RE) against
// the running kernel's BTF. With libbpf 1.1 that meant, on every run,
// reading the 5 MB of /sys/kernel/btf/vmlinux (one page per read), parsing
// it and scanning all of its types once per structure we read: ~13 ms of
// the ~21 ms load. bpftool's `gen min_core_btf` keeps of that BTF only the
// members our object's relocations touch, at their offsets (under 1 KB),
// and libbpf computes the same relocations from it.
//
// The subset is made once per boot, kernel build and BPF object, by bpftool
// running as nobody without capabilities, and kept by root in /run/pinfold
// (0700, on a tmpfs that a reboot, the only way to change the kernel,
// empties). Its name carries the boot id, the kernel's release and version
// and a hash of the object, so no other kernel's or build's subset can be
// picked up; it is used only if it is a regular file of ours with one link
// that no one else can write. It is trusted state like the directory's lock
// files and pins: whoever can write it chooses the offsets at which the
// identity capture reads. So only root pinfold keeps one: a non-root
// pinfold's runtime directory is writable by every process of its user,
// the proxy and --trusted-command jobs included (run_command.cpp).
// Anything else (no bpftool, a failed generation, an unusable file) means
// the whole kernel BTF, as before.

#include <optional>
#include <span>
#include <string>

namespace pinfold::loader {

class CoreBtf {
public:
    // The subset for `object` (the BPF ELF) in `cache_dir`, made now with
    // bpftool if this boot has none yet (one attempt per boot: a failure is
    // marked and warned about once).
    [[nodiscard]] static std::optional<CoreBtf> find_or_make(const std::string& cache_dir,
                                                             std::span<const unsigned char> object);

    // For libbpf's btf_custom_path: /proc/self/fd/N of the file that was
    // checked, so the path cannot be swapped in between. Valid while this
    // object lives.
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    CoreBtf(CoreBtf&& other) noexcept;
    CoreBtf& operator=(CoreBtf&&) = delete;
    CoreBtf(const CoreBtf&) = delete;
    CoreBtf& operator=(const CoreBtf&) = delete;
    ~CoreBtf();

    // --- pure part, for tests ---
    // The file name for a boot id, a kernel build (uname release and
    // version) and an object, or empty if the boot id is not what the
    // kernel writes (36 characters of hex and dashes).
    [[nodiscard]] static std::string file_name(const std::string& boot_id, const std::string& kernel,
                                               std::span<const unsigned char> object);

private:
    explicit CoreBtf(int fd);
    int fd_;
    std::string path_;
};

} // namespace pinfold::loader
