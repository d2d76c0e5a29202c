// --allow-private-netns: the flag and the modes that refuse it (pure
// parts; tests/redteam/test_private_netns.py runs the real thing).

#include <doctest/doctest.h>

#include <unistd.h>

#include <string>
#include <variant>
#include <vector>

#include "options.hpp"
#include "private_netns.hpp"

using namespace pinfold::loader;

TEST_CASE("--allow-private-netns is off unless given")
{
    auto plain = parse_command_line({"run", "--policy", "p.yaml", "--", "true"});
    REQUIRE(plain);
    CHECK_FALSE(std::get<RunOptions>(*plain).allow_private_netns);
    auto on = parse_command_line({"run", "--policy", "p.yaml", "--allow-private-netns", "--", "true"});
    REQUIRE(on);
    CHECK(std::get<RunOptions>(*on).allow_private_netns);
}

TEST_CASE("modes that keep the option sound")
{
    CHECK(check_private_netns_mode(false, false, false));
    CHECK(check_private_netns_mode(true, true, false));
    CHECK_FALSE(private_netns_needs_confinement(false, false, false));
    CHECK_FALSE(private_netns_needs_confinement(true, true, false));
    CHECK_FALSE(private_netns_needs_confinement(true, false, true));
    auto off = check_private_netns_mode(true, false, false);
    if (::geteuid() == 0) {
        REQUIRE_FALSE(off);
        CHECK(off.error().message.find("--sandbox off when pinfold runs as root") != std::string::npos);
        CHECK_FALSE(private_netns_needs_confinement(true, false, false));
    } else {
        CHECK(off);
        CHECK(private_netns_needs_confinement(true, false, false));
    }
}
