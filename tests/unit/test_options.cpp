#include <doctest/doctest.h>

#include "options.hpp"

using namespace pinfold::loader;

TEST_CASE("pinfold run parses into a plan")
{
    auto c = parse_command_line({"run", "--policy", "p.yaml", "--audit", "a.jsonl", "--host", "x.test=127.0.0.1",
                                 "--", "curl", "--max-time", "5", "http://x.test/"});
    REQUIRE(c);
    auto& run = std::get<RunOptions>(*c);
    CHECK(run.policy_path == "p.yaml");
    CHECK(run.audit_path == "a.jsonl");
    CHECK(run.hosts == std::vector<std::string>{"x.test=127.0.0.1"});
    // Options after -- belong to the command, not to pinfold.
    CHECK(run.command == std::vector<std::string>{"curl", "--max-time", "5", "http://x.test/"});
}

TEST_CASE("bad command lines name what is wrong")
{
    auto no_dashdash = parse_command_line({"run", "--policy", "p.yaml", "curl"});
    REQUIRE_FALSE(no_dashdash);
    CHECK(no_dashdash.error().message.find("'--'") != std::string::npos);

    auto no_policy = parse_command_line({"run", "--", "true"});
    REQUIRE_FALSE(no_policy);
    CHECK(no_policy.error().message.find("policy") != std::string::npos);

    auto unknown = parse_command_line({"run", "--policy", "p", "--frobnicate", "--", "true"});
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().message.find("frobnicate") != std::string::npos);

    auto level = parse_command_line({"run", "--policy", "p", "--log-level", "loud", "--", "true"});
    REQUIRE_FALSE(level);
    CHECK(level.error().message.find("--log-level") != std::string::npos);

    auto host = parse_command_line({"run", "--policy", "p", "--host", "noequals", "--", "true"});
    REQUIRE_FALSE(host);
    CHECK(host.error().message.find("--host") != std::string::npos);

    CHECK_FALSE(parse_command_line({"run", "--policy", "p", "--"}));
    CHECK_FALSE(parse_command_line({}));
    CHECK_FALSE(parse_command_line({"launch"}));
    CHECK_FALSE(parse_command_line({"check"}));
}

TEST_CASE("pinfold check takes files")
{
    auto c = parse_command_line({"check", "a.yaml", "b.yaml"});
    REQUIRE(c);
    CHECK(std::get<CheckOptions>(*c).policy_paths.size() == 2);
}

TEST_CASE("--busy-poll-us is off unless given, and bounded")
{
    auto plain = parse_command_line({"run", "--policy", "p", "--", "true"});
    REQUIRE(plain);
    CHECK(std::get<RunOptions>(*plain).busy_poll_us == 0);

    auto on = parse_command_line({"run", "--policy", "p", "--busy-poll-us", "200", "--", "true"});
    REQUIRE(on);
    CHECK(std::get<RunOptions>(*on).busy_poll_us == 200);

    for (const char* bad : {"-1", "1001", "lots", "2.5"}) {
        auto r = parse_command_line({"run", "--policy", "p", "--busy-poll-us", bad, "--", "true"});
        REQUIRE_FALSE(r);
        CHECK(r.error().message.find("busy-poll-us") != std::string::npos);
    }
}
