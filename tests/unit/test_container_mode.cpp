// Container mode's pure parts: which cgroup layout it accepts, what it
// reports, and the socket marks the proxy writes (common/socket_exemption).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "container_mode.hpp"
#include "pinfold/socket_exemption.hpp"
#include "pinfold_abi.h"

using namespace pinfold;

TEST_CASE("container mode needs pinfold in the container's own cgroup")
{
    CHECK(loader::check_container_layout("/", false));
    auto nested = loader::check_container_layout("/job", false);
    REQUIRE_FALSE(nested);
    CHECK(nested.error().message.find("/job") != std::string::npos);
    CHECK(nested.error().message.find("private cgroup namespace") != std::string::npos);
}

TEST_CASE("container mode says what it cannot do")
{
    auto contains = [](const std::vector<std::string>& lines, const std::string& what) {
        return std::any_of(lines.begin(), lines.end(), [&](const auto& l) { return l.find(what) != std::string::npos; });
    };
    auto plain = loader::container_mode_limitations(false, true);
    CHECK(contains(plain, "limits are unavailable"));
    CHECK(contains(plain, "without links"));
    CHECK_FALSE(contains(plain, "were not applied"));
    CHECK_FALSE(contains(plain, "--sandbox off"));
    auto asked = loader::container_mode_limitations(true, false);
    CHECK(contains(asked, "were not applied"));
    CHECK(contains(asked, "--sandbox off"));
}

namespace {
std::vector<std::pair<int, std::uint64_t>> written;
bool record(int map_fd, int socket_fd, std::uint64_t mark)
{
    written.emplace_back(map_fd * 1000 + socket_fd, mark);
    return socket_fd != 13;   // a write the kernel refuses
}
} // namespace

TEST_CASE("socket marks: nothing without a map, the right mark with one, failure reported")
{
    written.clear();
    set_exemption_writer_for_testing(record);
    set_exemption_map(-1);
    CHECK_FALSE(exemption_enabled());
    CHECK(exempt_upstream(5));
    CHECK(written.empty());
    set_exemption_map(7);
    CHECK(exemption_enabled());
    CHECK(exempt_upstream(5));
    CHECK(exempt_replies(6));
    CHECK_FALSE(exempt_upstream(13));
    REQUIRE(written.size() == 3);
    CHECK(written[0] == std::pair<int, std::uint64_t>{7005, PF_EXEMPT_CONNECT});
    CHECK(written[1] == std::pair<int, std::uint64_t>{7006, PF_EXEMPT_REPLY});
    set_exemption_map(-1);
    set_exemption_writer_for_testing(nullptr);
}
