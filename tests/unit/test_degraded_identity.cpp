// Degraded executable identity (--allow-degraded-identity): the proxy's
// origin takes the executable from pinfold's /proc lookup. The kernel record
// and the lookup are faked here; the loader side reads this process's own
// /proc entries (no privilege needed).
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <optional>

#include "exe_lookup_service.hpp"
#include "proxy/degraded_origin.hpp"

using namespace pinfold;
using namespace pinfold::proxy;

namespace {

class FakeKernelOrigin final : public OriginSource {
public:
    ConnectionOrigin record;
    bool has_record = true;
    Result<ConnectionOrigin> lookup(int) noexcept override
    {
        if (!has_record)
            return fail("no origin recorded for this connection");
        return record;
    }
};

class FakeLookup final : public ExecutableLookup {
public:
    // Not a Result member: GCC 12 warns (maybe-uninitialized) on assigning one.
    std::optional<LookedUpExecutable> found;
    Error error{ESRCH, "pinfold could not read /proc/PID/exe"};
    std::uint32_t asked_pid = 0;
    std::uint64_t asked_cgroup = 0;
    int calls = 0;
    Result<LookedUpExecutable> executable_of(std::uint32_t pid, std::uint64_t cgroup_id) noexcept override
    {
        ++calls;
        asked_pid = pid;
        asked_cgroup = cgroup_id;
        if (found)
            return *found;
        return std::unexpected(error);
    }
};

std::string own_cgroup()
{
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("0::"))
            return line.substr(3);
    }
    return "";
}

} // namespace

TEST_CASE("degraded identity takes the executable pinfold looked up, and says so")
{
    FakeKernelOrigin kernel;
    kernel.record.pid = 4242;
    kernel.record.cgroup_id = 77;
    FakeLookup lookup;
    lookup.found = LookedUpExecutable{policy::ExeIdentity{2049, 1234}, "/usr/bin/curl"};
    DegradedIdentityOrigin origins(kernel, lookup);
    auto o = origins.lookup(3);
    REQUIRE(o);
    CHECK(lookup.asked_pid == 4242);
    CHECK(lookup.asked_cgroup == 77);
    CHECK(o->exe == policy::ExeIdentity{2049, 1234});
    CHECK(o->exe_path == "/usr/bin/curl");
    CHECK(o->exe_name == "curl");
    CHECK(o->identity_note.starts_with("degraded: executable read from /proc/4242/exe"));
}

TEST_CASE("a failed degraded lookup leaves no identity: binaries rules admit nothing")
{
    FakeKernelOrigin kernel;
    kernel.record.pid = 4242;
    FakeLookup lookup;
    DegradedIdentityOrigin origins(kernel, lookup);
    auto o = origins.lookup(3);
    REQUIRE(o);
    CHECK_FALSE(o->exe.known());
    CHECK(o->identity_note.find("could not be read") != std::string::npos);
    CHECK(o->identity_note.find("admit no connection") != std::string::npos);

    kernel.record.pid = 0;   // a record without a pid is not looked up at all
    lookup.calls = 0;
    auto none = origins.lookup(3);
    REQUIRE(none);
    CHECK(lookup.calls == 0);
    CHECK_FALSE(none->exe.known());
}

TEST_CASE("a kernel-captured identity is kept, and no record stays an error")
{
    FakeKernelOrigin kernel;
    kernel.record.pid = 1;
    kernel.record.exe = policy::ExeIdentity{1, 2};
    FakeLookup lookup;
    DegradedIdentityOrigin origins(kernel, lookup);
    auto o = origins.lookup(3);
    REQUIRE(o);
    CHECK(o->exe == policy::ExeIdentity{1, 2});
    CHECK(o->identity_note.empty());
    CHECK(lookup.calls == 0);

    kernel.has_record = false;
    CHECK_FALSE(origins.lookup(3));
}

TEST_CASE("pinfold's lookup answers only for processes of the sandbox cgroup")
{
    std::string cgroup = own_cgroup();
    REQUIRE_FALSE(cgroup.empty());
    auto mine = loader::executable_of_sandbox_pid(::getpid(), cgroup);
    REQUIRE_MESSAGE(mine, mine.error().what());
    struct stat st{};
    REQUIRE(::stat("/proc/self/exe", &st) == 0);
    CHECK(mine->dev == st.st_dev);
    CHECK(mine->ino == st.st_ino);
    CHECK(mine->path.ends_with("unit_tests"));

    auto elsewhere = loader::executable_of_sandbox_pid(::getpid(), cgroup + "/not-here");
    REQUIRE_FALSE(elsewhere);
    CHECK(elsewhere.error().code == EPERM);
    // A prefix of a name is not a parent directory.
    if (cgroup.size() > 1) {
        auto prefix = loader::executable_of_sandbox_pid(::getpid(), cgroup.substr(0, cgroup.size() - 1));
        CHECK_FALSE(prefix);
    }
    CHECK_FALSE(loader::executable_of_sandbox_pid(0, cgroup));
}
