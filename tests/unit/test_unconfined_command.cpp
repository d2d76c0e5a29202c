#include <doctest/doctest.h>

#include "options.hpp"
#include "privileges.hpp"

using pinfold::loader::check_unconfined_command;

TEST_CASE("a non-root --sandbox off run needs --trusted-command")
{
    // sandbox_enabled, trusted_command, root, container_mode
    CHECK(check_unconfined_command(true, false, false, false));
    CHECK(check_unconfined_command(false, true, false, false));
    CHECK(check_unconfined_command(false, false, true, false));
    CHECK(check_unconfined_command(false, false, false, true));
    auto refused = check_unconfined_command(false, false, false, false);
    REQUIRE_FALSE(refused);
    CHECK(std::string(refused.error().what()).find("--trusted-command") != std::string::npos);
    CHECK(std::string(refused.error().what()).find("cgroup") != std::string::npos);
}

TEST_CASE("--trusted-command parses")
{
    auto c = pinfold::loader::parse_command_line({"run", "--policy", "p.yaml", "--sandbox", "off", "--trusted-command",
                                                  "--", "podman", "run"});
    REQUIRE(c);
    CHECK(std::get<pinfold::loader::RunOptions>(*c).trusted_command);
}
