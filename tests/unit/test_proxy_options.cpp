// pinfold-proxy's command line: the loader builds it, but the proxy checks
// it again, because it is a program of its own that can be started by hand.
#include <doctest/doctest.h>

#include "proxy/proxy_options.hpp"

using namespace pinfold::proxy;

namespace {

std::vector<std::string> required_plus(std::vector<std::string> extra)
{
    std::vector<std::string> args = {"--origin-map-fd", "3", "--audit-fd", "4", "--policy-fd", "5",
                                     "--policy-source", "p.yaml", "--ready-fd", "6", "--sandbox-id", "7"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

} // namespace

TEST_CASE("the proxy sleeps in epoll_wait at once unless --busy-poll-us is given")
{
    auto plain = parse_proxy_options(required_plus({}));
    REQUIRE(plain);
    CHECK(plain->busy_poll_us == 0);

    auto on = parse_proxy_options(required_plus({"--busy-poll-us", "1000"}));
    REQUIRE(on);
    CHECK(on->busy_poll_us == 1000);
}

TEST_CASE("a --busy-poll-us out of range is refused by name")
{
    for (const char* bad : {"-5", "1001", "100000", "fast"}) {
        auto r = parse_proxy_options(required_plus({"--busy-poll-us", bad}));
        REQUIRE_FALSE(r);
        CHECK(r.error().message.find("busy-poll-us") != std::string::npos);
    }
}

TEST_CASE("the proxy needs exactly one source of the origin map")
{
    auto both = parse_proxy_options(required_plus({"--handover-fd", "8"}));
    REQUIRE_FALSE(both);
    CHECK(both.error().message.find("--handover-fd") != std::string::npos);
}
