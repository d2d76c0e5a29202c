// The kernel BTF subset (loader/core_btf_cache.hpp) must relocate every
// program of pinfold's object exactly as the whole kernel BTF does: the
// executable identity capture and the unix hooks read kernel structures at
// the offsets it gives. Loads the object both ways and compares the final
// instructions of each program (label `bpf`, needs root and bpftool).
#include <doctest/doctest.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core_btf_cache.hpp"
#include "pinfold_bpf.skel.h"

namespace {

using Skeleton = std::unique_ptr<pinfold_bpf, void (*)(pinfold_bpf*)>;

constexpr int unix_connect_type = 49;   // BPF_CGROUP_UNIX_CONNECT (Linux 6.7)
constexpr int unix_sendmsg_type = 50;

bool kernel_has_unix_hooks()
{
    const bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 1},
        {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
    };
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = static_cast<bpf_attach_type>(unix_connect_type));
    int fd = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "pf_probe", "Dual BSD/GPL", insns, 2, &opts);
    if (fd < 0)
        return false;
    ::close(fd);
    return true;
}

// Every program of the object, both connect variants included; the unix
// hooks where the kernel has them.
Skeleton load(const char* kernel_btf_path, bool unix_hooks)
{
    LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = kernel_btf_path);
    Skeleton skel(pinfold_bpf__open_opts(&opts), pinfold_bpf__destroy);
    REQUIRE(skel);
    bpf_program__set_autoload(skel->progs.pf_connect_unix, unix_hooks);
    bpf_program__set_autoload(skel->progs.pf_sendmsg_unix, unix_hooks);
    bpf_program__set_expected_attach_type(skel->progs.pf_connect_unix,
                                          static_cast<bpf_attach_type>(unix_connect_type));
    bpf_program__set_expected_attach_type(skel->progs.pf_sendmsg_unix,
                                          static_cast<bpf_attach_type>(unix_sendmsg_type));
    REQUIRE(pinfold_bpf__load(skel.get()) == 0);
    return skel;
}

bool is_map_reference(const bpf_insn& insn)
{
    return insn.code == (BPF_LD | BPF_IMM | BPF_DW) &&
           (insn.src_reg == BPF_PSEUDO_MAP_FD || insn.src_reg == BPF_PSEUDO_MAP_VALUE);
}

struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/pinfold-core-btf-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

} // namespace

TEST_CASE("the kernel BTF subset relocates every program as the whole kernel BTF does")
{
    TempDir dir;
    std::size_t size = 0;
    const auto* elf = static_cast<const unsigned char*>(pinfold_bpf__elf_bytes(&size));
    auto subset = pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size});
    REQUIRE_MESSAGE(subset, "no kernel BTF subset: is /usr/sbin/bpftool installed (scripts/install-deps.sh)?");

    // One private file, under 64 KiB: a subset, not a copy of the 5 MB.
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path)) {
        ++files;
        struct stat st{};
        REQUIRE(::stat(entry.path().c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        CHECK(st.st_size < 64 * 1024);
        CHECK(entry.path().filename().string().starts_with("core-btf-"));
    }
    CHECK(files == 1);

    bool unix_hooks = kernel_has_unix_hooks();
    auto whole = load(nullptr, unix_hooks);
    auto reduced = load(subset->path().c_str(), unix_hooks);
    int compared = 0;
    bpf_program* prog;
    bpf_object__for_each_program(prog, whole->obj)
    {
        if (!bpf_program__autoload(prog))
            continue;
        const char* name = bpf_program__name(prog);
        CAPTURE(name);
        bpf_program* other = bpf_object__find_program_by_name(reduced->obj, name);
        REQUIRE(other);
        REQUIRE(bpf_program__insn_cnt(prog) == bpf_program__insn_cnt(other));
        const bpf_insn* a = bpf_program__insns(prog);
        const bpf_insn* b = bpf_program__insns(other);
        REQUIRE(a);
        REQUIRE(b);
        for (std::size_t i = 0; i < bpf_program__insn_cnt(prog); ++i) {
            CAPTURE(i);
            // Map fds differ between the two loads; everything else,
            // relocated offsets included, must not.
            bool map_ref = is_map_reference(a[i]) || (i > 0 && is_map_reference(a[i - 1]));
            CHECK(a[i].code == b[i].code);
            CHECK(a[i].dst_reg == b[i].dst_reg);
            CHECK(a[i].src_reg == b[i].src_reg);
            CHECK(a[i].off == b[i].off);
            if (!map_ref)
                CHECK(a[i].imm == b[i].imm);
        }
        ++compared;
    }
    // The 14 hooks, with both variants of the two connect programs.
    CHECK(compared == (unix_hooks ? 18 : 16));

    // What is compared is relocated: bpf/lib/identity.h declares its own
    // small layouts, so the capture's offsets differ from the object's.
    Skeleton unloaded(pinfold_bpf__open(), pinfold_bpf__destroy);
    REQUIRE(unloaded);
    const bpf_program* raw = unloaded->progs.pf_connect4_exe;
    const bpf_program* relocated = whole->progs.pf_connect4_exe;
    REQUIRE(bpf_program__insn_cnt(raw) == bpf_program__insn_cnt(relocated));
    int moved = 0;
    for (std::size_t i = 0; i < bpf_program__insn_cnt(raw); ++i) {
        const bpf_insn& x = bpf_program__insns(raw)[i];
        const bpf_insn& y = bpf_program__insns(relocated)[i];
        bool map_ref = is_map_reference(x) || (i > 0 && is_map_reference(bpf_program__insns(raw)[i - 1]));
        if (!map_ref && (x.off != y.off || x.imm != y.imm))
            ++moved;
    }
    CHECK(moved > 0);
}

TEST_CASE("the subset is found again, and one of another owner or mode is not used")
{
    TempDir dir;
    std::size_t size = 0;
    const auto* elf = static_cast<const unsigned char*>(pinfold_bpf__elf_bytes(&size));
    // Another build's subset of this boot stays; an earlier boot's goes.
    std::string boot_id;
    {
        std::ifstream in("/proc/sys/kernel/random/boot_id");
        std::getline(in, boot_id);
    }
    std::string other_build = dir.path + "/core-btf-" + boot_id + "-0000000000000000.btf";
    std::string other_boot = dir.path + "/core-btf-00000000-0000-0000-0000-000000000000-0000000000000000.btf";
    std::ofstream(other_build) << "x";
    std::ofstream(other_boot) << "x";
    auto made = pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size});
    REQUIRE(made);
    CHECK(std::filesystem::exists(other_build));
    CHECK_FALSE(std::filesystem::exists(other_boot));
    std::filesystem::remove(other_build);
    std::string file;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path))
        file = entry.path();
    REQUIRE(!file.empty());
    struct stat before{};
    REQUIRE(::stat(file.c_str(), &before) == 0);
    CHECK(pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size}));
    struct stat again{};
    REQUIRE(::stat(file.c_str(), &again) == 0);
    CHECK(again.st_ino == before.st_ino);   // found, not made again

    // Writable by others: whoever could write it could move the offsets.
    REQUIRE(::chmod(file.c_str(), 0622) == 0);
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size}));
    REQUIRE(::chmod(file.c_str(), 0600) == 0);
    // A second name: it could be written through that one.
    std::string second = dir.path + "/second";
    REQUIRE(::link(file.c_str(), second.c_str()) == 0);
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size}));
    REQUIRE(::unlink(second.c_str()) == 0);
    REQUIRE(::chown(file.c_str(), 65534, 65534) == 0);
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size}));
    // A link in its place is not followed, a FIFO does not hang the start,
    // and neither is replaced by a subset made anew.
    REQUIRE(::unlink(file.c_str()) == 0);
    REQUIRE(::symlink("/etc/hostname", file.c_str()) == 0);
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size}));
    REQUIRE(::unlink(file.c_str()) == 0);
    REQUIRE(::mkfifo(file.c_str(), 0600) == 0);
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, {elf, size}));
}

TEST_CASE("a failed generation is tried once per boot and leaves no file")
{
    TempDir dir;
    // Not an ELF object: bpftool refuses it.
    const unsigned char junk[] = {'n', 'o', 't', ' ', 'e', 'l', 'f'};
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, junk));
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path))
        names.push_back(entry.path().filename());
    REQUIRE(names.size() == 1);
    CHECK(names[0].ends_with(".btf.failed"));
    CHECK_FALSE(pinfold::loader::CoreBtf::find_or_make(dir.path, junk));
}

TEST_CASE("the subset's name carries the boot, the kernel build and the object")
{
    using pinfold::loader::CoreBtf;
    const unsigned char one[] = {1, 2, 3};
    const unsigned char two[] = {1, 2, 4};
    std::string boot = "12fe09b3-8916-4794-8960-f9fe34719d6d";
    std::string kernel = "6.18.44 #1 SMP PREEMPT_DYNAMIC";
    auto a = CoreBtf::file_name(boot, kernel, one);
    CHECK(a.starts_with("core-btf-" + boot + "-"));
    CHECK(a.ends_with(".btf"));
    CHECK(a != CoreBtf::file_name(boot, kernel, two));
    CHECK(a != CoreBtf::file_name(boot, "6.18.45 #1 SMP PREEMPT_DYNAMIC", one));
    CHECK(a != CoreBtf::file_name("22fe09b3-8916-4794-8960-f9fe34719d6d", kernel, one));
    CHECK(CoreBtf::file_name("../../etc/passwd", kernel, one).empty());
    CHECK(CoreBtf::file_name("", kernel, one).empty());
}
