// Where runs keep their state: ownership checks, the delegated cgroup of a
// non-root caller, --cgroup-parent, and the record in a run's lock file
// (pure parts; tests/integration/test_unprivileged.py runs the real thing).

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <map>
#include <string>
#include <variant>

#include "options.hpp"
#include "run_state.hpp"
#include "runtime_paths.hpp"

using namespace pinfold;
using namespace pinfold::loader;

namespace {

// A fake filesystem: path -> (uid, mode); directories unless a symlink.
struct FakeTree {
    std::map<std::string, PathFacts> entries;
    void dir(const std::string& path, uid_t uid, mode_t mode)
    {
        entries[path] = PathFacts{true, true, false, uid, static_cast<mode_t>(S_IFDIR | mode)};
    }
    void link(const std::string& path, uid_t uid)
    {
        entries[path] = PathFacts{true, false, true, uid, static_cast<mode_t>(S_IFLNK | 0777)};
    }
    PathProbe probe() const
    {
        return [this](const std::string& p) {
            auto it = entries.find(p);
            return it == entries.end() ? PathFacts{} : it->second;
        };
    }
};

FakeTree host()
{
    FakeTree t;
    t.dir("/", 0, 0755);
    t.dir("/run", 0, 0755);
    t.dir("/run/user", 0, 0755);
    t.dir("/run/user/1000", 1000, 0700);
    t.dir("/tmp", 0, 01777);
    return t;
}

} // namespace

TEST_CASE("private locations: ours, not open to others, no foreign or writable parent")
{
    FakeTree t = host();
    auto probe = t.probe();
    CHECK(check_private_location("/run/user/1000/pinfold", 1000, "XDG_RUNTIME_DIR", probe).has_value());
    t.dir("/run/user/1000/pinfold", 1000, 0700);
    CHECK(check_private_location("/run/user/1000/pinfold", 1000, "XDG_RUNTIME_DIR", probe).has_value());
    // Root's runtime directory is not a user's.
    t.dir("/run/pinfold", 0, 0700);
    auto foreign = check_private_location("/run/pinfold", 1000, "--runtime-dir", probe);
    REQUIRE_FALSE(foreign.has_value());
    CHECK(foreign.error().message.find("--runtime-dir /run/pinfold: owned by uid 0") != std::string::npos);
    // Another user's directory on the way.
    auto other = check_private_location("/run/user/1000/x", 1001, "--runtime-dir", probe);
    REQUIRE_FALSE(other.has_value());
    CHECK(other.error().message.find("its parent /run/user/1000 belongs to uid 1000") != std::string::npos);
    // World-writable: refused, and the error names the path and the mode.
    t.dir("/run/user/1000/open", 1000, 0777);
    auto open = check_private_location("/run/user/1000/open", 1000, "--runtime-dir", probe);
    REQUIRE_FALSE(open.has_value());
    CHECK(open.error().message.find("/run/user/1000/open: writable by others (mode 0777)") != std::string::npos);
    // A sticky world-writable parent (/tmp) is fine, a plain one is not.
    CHECK(check_private_location("/tmp/pf", 1000, "--runtime-dir", probe).has_value());
    t.dir("/shared", 0, 0777);
    CHECK_FALSE(check_private_location("/shared/pf", 1000, "--runtime-dir", probe).has_value());
    // A symbolic link someone planted.
    t.link("/tmp/pf", 1001);
    auto link = check_private_location("/tmp/pf/locks", 1000, "--runtime-dir", probe);
    REQUIRE_FALSE(link.has_value());
    CHECK(link.error().message.find("/tmp/pf is a symbolic link") != std::string::npos);
    CHECK_FALSE(check_private_location("relative/dir", 1000, "--runtime-dir", probe).has_value());
}

TEST_CASE("the delegated cgroup: the highest cgroup of the user above the caller")
{
    FakeTree t;
    const std::string root = "/sys/fs/cgroup/unified";
    t.dir(root, 0, 0555);
    t.dir(root + "/pinfold-users", 0, 0755);
    t.dir(root + "/pinfold-users/64100", 64100, 0755);
    t.dir(root + "/pinfold-users/64100/session", 64100, 0755);
    t.dir(root + "/other", 0, 0755);
    auto d = delegated_cgroup(root, root + "/pinfold-users/64100/session", 64100, t.probe());
    REQUIRE(d.has_value());
    CHECK(*d == root + "/pinfold-users/64100");
    // Not delegated: the error names the caller's cgroup and the setup.
    auto no = delegated_cgroup(root, root + "/other", 64100, t.probe());
    REQUIRE_FALSE(no.has_value());
    CHECK(no.error().message.find("cgroup " + root + "/other, which is not delegated to uid 64100") !=
          std::string::npos);
    CHECK(no.error().message.find("setup-unprivileged.sh") != std::string::npos);
    CHECK_FALSE(delegated_cgroup(root, root, 64100, t.probe()).has_value());
    // Another user's subtree is not ours.
    CHECK_FALSE(delegated_cgroup(root, root + "/pinfold-users/64100/session", 64101, t.probe()).has_value());
}

TEST_CASE("common cgroup and --cgroup-parent")
{
    CHECK(common_cgroup("/c/u/1/session", "/c/u/1/pinfold/run-5/sandbox") == "/c/u/1");
    CHECK(common_cgroup("/c", "/c/x") == "/c");
    CHECK(common_cgroup("/a/b", "/c/d") == "/");
    const std::string root = "/sys/fs/cgroup/unified";
    CHECK(cgroup_parent_directory(root + "/pinfold-users/1/pinfold", root).value() == root + "/pinfold-users/1/pinfold");
    CHECK(cgroup_parent_directory("/pinfold-users/1/pinfold/", root).value() == root + "/pinfold-users/1/pinfold");
    CHECK(cgroup_parent_directory("/a/../b", root).value() == root + "/b");
    CHECK_FALSE(cgroup_parent_directory("pinfold", root).has_value());
}

TEST_CASE("location flags parse into RunOptions")
{
    auto c = parse_command_line({"run", "--policy", "p.yaml", "--runtime-dir", "/r", "--bpffs-dir", "/b",
                                 "--cgroup-parent", "/c", "--", "true"});
    REQUIRE(c.has_value());
    const auto& o = std::get<RunOptions>(*c);
    CHECK(o.locations.runtime_dir == "/r");
    CHECK(o.locations.bpffs_dir == "/b");
    CHECK(o.locations.cgroup_parent == "/c");
}

TEST_CASE("a run's lock file records its owner and what it made")
{
    RunRecord r;
    r.pid = 4242;
    r.uid = 64100;
    r.cgroup = "/sys/fs/cgroup/unified/pinfold-users/64100/pinfold/run-4242";
    r.cgroup_id = 12345678901ULL;
    r.pins = "/run/pinfold-bpf/64100/run-4242";
    r.pins_ino = 77;
    RunRecord back = parse_run_record(format_run_record(r));
    CHECK(back.cgroup_id == 12345678901ULL);
    CHECK(back.pins_ino == 77);
    CHECK(back.pid == 4242);
    CHECK(back.uid == 64100);
    CHECK(back.cgroup == r.cgroup);
    CHECK(back.pins == r.pins);
    RunRecord empty = parse_run_record("");
    CHECK(empty.uid == -1);
    CHECK(empty.cgroup.empty());
    CHECK(parse_run_record("uid=-3\nuid=x\n").uid == -1);
}
