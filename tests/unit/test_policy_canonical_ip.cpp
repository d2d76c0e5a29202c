// canonical_ip decides whether a request's Host is an address literal and in
// which spelling the policy compares it. IPv4 text is returned as given once
// inet_pton accepted it (no inet_ntop round trip): this pins that every
// spelling inet_pton accepts is the one inet_ntop would write, and that the
// other spellings of an address stay refused.

#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <optional>
#include <string>
#include <string_view>

#include "policy/endpoint.hpp"

using pinfold::policy::canonical_ip;

TEST_CASE("canonical_ip: IPv4 dotted quads come back as written")
{
    for (const char* text : {"127.0.0.1", "0.0.0.0", "255.255.255.255", "10.20.30.40", "1.2.3.4", "192.168.0.100"}) {
        CAPTURE(text);
        const auto ip = canonical_ip(text);
        REQUIRE(ip.has_value());
        CHECK(*ip == text);
    }
}

TEST_CASE("canonical_ip: other spellings of an IPv4 address are not addresses")
{
    for (const char* text : {"01.2.3.4", "1.2.3.04", "000.0.0.0", "127.1", "0x7f.0.0.1", "2130706433", "1.2.3.4.5",
                             "256.1.1.1", " 1.2.3.4", "1.2.3.4 ", "1..2.3", "1.2.3.", "0177.0.0.1", "1.2.3.4\n", ""}) {
        CAPTURE(text);
        CHECK_FALSE(canonical_ip(text).has_value());
    }
}

TEST_CASE("canonical_ip: every IPv4 text inet_pton accepts is what inet_ntop writes")
{
    // All one- to three-digit octet spellings of a few addresses, with and
    // without leading zeros: accepted exactly when already canonical.
    for (const char* octet : {"0", "00", "000", "7", "07", "007", "10", "010", "99", "099", "100", "255", "256"}) {
        const std::string text = std::string(octet) + ".1." + octet + ".2";
        CAPTURE(text);
        unsigned char address[4];
        char written[INET_ADDRSTRLEN];
        const bool parsed = inet_pton(AF_INET, text.c_str(), address) == 1;
        const auto ip = canonical_ip(text);
        CHECK(ip.has_value() == parsed);
        if (parsed) {
            REQUIRE(inet_ntop(AF_INET, address, written, sizeof written) != nullptr);
            CHECK(*ip == written);
        }
    }
}

TEST_CASE("canonical_ip: IPv6 is rewritten in its canonical form")
{
    CHECK(canonical_ip("0:0:0:0:0:0:0:1") == std::optional<std::string>("::1"));
    CHECK(canonical_ip("::FFFF:10.0.0.1") == std::optional<std::string>("::ffff:10.0.0.1"));
    CHECK_FALSE(canonical_ip("fe80::1%eth0").has_value());
}

TEST_CASE("canonical_ip: a NUL inside the text is not an address")
{
    using namespace std::string_view_literals;
    for (std::string_view text : {"1.2.3.4\0x"sv, "1.2.3.4\0"sv, "::1\0abc"sv, "\0"sv}) {
        CAPTURE(std::string(text));
        CHECK_FALSE(canonical_ip(text).has_value());
    }
}
