// The sandbox's flags, units, policy limits and the plan built from them
// (no namespace is created here: the plan is pure).

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <variant>

#include "options.hpp"
#include "pinfold/units.hpp"
#include "policy/policy.hpp"
#include "sandbox_spec.hpp"

using namespace pinfold;
using namespace pinfold::loader;

TEST_CASE("sizes, durations and cpus")
{
    CHECK(parse_size("512M").value() == 512ULL << 20);
    CHECK(parse_size("1.5G").value() == 3ULL << 29);
    CHECK(parse_size("65536").value() == 65536);
    CHECK_FALSE(parse_size("lots").has_value());
    CHECK_FALSE(parse_size("2X").has_value());
    CHECK_FALSE(parse_size("-1G").has_value());
    CHECK(parse_duration("90").value() == std::chrono::seconds(90));
    CHECK(parse_duration("5m").value() == std::chrono::minutes(5));
    CHECK(parse_duration("1.5m").value() == std::chrono::seconds(90));
    CHECK_FALSE(parse_duration("5 parsecs").has_value());
    CHECK_FALSE(parse_duration("0").has_value());
    CHECK(parse_cpus("1.5").value() == doctest::Approx(1.5));
    CHECK_FALSE(parse_cpus("0").has_value());
    CHECK_FALSE(parse_cpus("two").has_value());
}

TEST_CASE("sandbox flags parse into SandboxOptions; errors name the flag")
{
    auto c = parse_command_line({"run", "--policy", "p.yaml", "--workspace", "/w", "--ro", "/a", "--rw", "/b",
                                 "--hide", "/c", "--env", "A=1", "--cpus", "1.5", "--memory", "2G", "--pids", "64",
                                 "--timeout", "5m", "--", "true"});
    REQUIRE(c.has_value());
    const auto& s = std::get<RunOptions>(*c).sandbox;
    CHECK(s.enabled);
    CHECK(s.workspace == "/w");
    CHECK(s.ro_paths == std::vector<std::string>{"/a"});
    CHECK(s.rw_paths == std::vector<std::string>{"/b"});
    CHECK(s.hide_paths == std::vector<std::string>{"/c"});
    CHECK(s.env == std::vector<std::string>{"A=1"});
    CHECK(*s.limits.cpus == doctest::Approx(1.5));
    CHECK(*s.limits.memory_bytes == 2ULL << 30);
    CHECK(*s.limits.pids == 64);
    CHECK(*s.limits.timeout == std::chrono::minutes(5));

    for (auto [flag, value] : {std::pair{"--memory", "lots"}, {"--cpus", "-1"}, {"--pids", "0"},
                               {"--timeout", "soon"}, {"--env", "NOVALUE"}, {"--sandbox", "maybe"}}) {
        auto bad = parse_command_line({"run", "--policy", "p.yaml", flag, value, "--", "true"});
        REQUIRE_FALSE(bad.has_value());
        CHECK(bad.error().message.find(flag) != std::string::npos);
    }
    auto off = parse_command_line({"run", "--policy", "p.yaml", "--sandbox", "off", "--memory", "1G", "--", "true"});
    REQUIRE_FALSE(off.has_value());
}

TEST_CASE("policy limits: the agent profile's figures, errors at file:line and field")
{
    auto p = policy::parse_policy("name: p\nlimits:\n  cpus: 1.5\n  memory: 4G\n  timeout: 15m\n  pids: 512\n"
                                  "rules:\n  - endpoint: https://h.example/x\n",
                                  "p.yaml");
    REQUIRE(p.has_value());
    CHECK(*p->limits.cpus == doctest::Approx(1.5));
    CHECK(*p->limits.memory_bytes == 4ULL << 30);
    CHECK(*p->limits.timeout == std::chrono::minutes(15));
    CHECK(*p->limits.pids == 512);

    auto bad = policy::parse_policy("name: p\nlimits:\n  memory: lots\nrules:\n  - endpoint: https://h.example/x\n",
                                    "p.yaml");
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().message.find("p.yaml:3:") == 0);
    CHECK(bad.error().message.find("limits.memory") != std::string::npos);
    auto unknown = policy::parse_policy("name: p\nlimits:\n  disk: 1G\nrules:\n  - endpoint: https://h.example/x\n",
                                        "p.yaml");
    REQUIRE_FALSE(unknown.has_value());
    CHECK(unknown.error().message.find("limits.disk") != std::string::npos);
}

TEST_CASE("the seed profiles carry their limits")
{
    struct Seed {
        const char* name;
        double cpus;
        unsigned long long gib;
        int minutes;
    };
    for (const Seed& seed : {Seed{"triage", 1, 2, 5}, Seed{"review", 1.5, 4, 15}, Seed{"code", 2, 8, 30},
                             Seed{"fix", 1.5, 4, 15}}) {
        auto p = policy::load_policy_file(std::string(PINFOLD_SOURCE_DIR) + "/policies/" + seed.name + ".yaml");
        REQUIRE(p.has_value());
        CHECK(*p->limits.cpus == doctest::Approx(seed.cpus));
        CHECK(*p->limits.memory_bytes == seed.gib << 30);
        CHECK(*p->limits.timeout == std::chrono::minutes(seed.minutes));
    }
}

TEST_CASE("the plan: hidden paths, environment allow-list, workspace checks")
{
    auto cwd = std::filesystem::temp_directory_path().string();
    SandboxOptions o;
    o.workspace = cwd;
    o.env = {"EXTRA=1", "PATH=/only"};
    ::setenv("PINFOLD_TEST_SECRET", "x", 1);
    auto plan = make_sandbox_plan(o, {"SSL_CERT_FILE=/b.pem"}, {});
    REQUIRE(plan.has_value());
    CHECK(plan->workspace == std::filesystem::canonical(cwd).string());
    bool hides_bpffs = false;
    for (const auto& m : plan->mounts)
        hides_bpffs |= m.kind == MountKind::hide_dir && m.target == "/sys/fs/bpf";
    CHECK(hides_bpffs);
    auto has = [&](const std::string& entry) {
        return std::find(plan->env.begin(), plan->env.end(), entry) != plan->env.end();
    };
    CHECK(has("EXTRA=1"));
    CHECK(has("PATH=/only"));
    CHECK(has("SSL_CERT_FILE=/b.pem"));
    CHECK(has("HOME=/tmp"));
    for (const auto& entry : plan->env)
        CHECK(entry.find("PINFOLD_TEST_SECRET") == std::string::npos);
    CHECK_FALSE(plan->seccomp.empty());

    o.workspace = "/sys/fs";
    CHECK_FALSE(make_sandbox_plan(o, {}, {}).has_value());
    o.workspace = "/";
    CHECK_FALSE(make_sandbox_plan(o, {}, {}).has_value());
    o.workspace = cwd;
    o.hide_paths = {"/does/not/exist"};
    auto missing = make_sandbox_plan(o, {}, {});
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().message.find("--hide") == 0);
}
