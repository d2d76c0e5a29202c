// Request-target normalisation: the table of hostile inputs a client could
// use to make the policy see one path and the server another.

#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "policy/policy.hpp"

using pinfold::policy::is_normalized_path;
using pinfold::policy::normalize_target;

namespace {

struct Case {
    std::string target;
    std::optional<std::string> path;  // nullopt: must be rejected
    std::string query = {};
};

const Case cases[] = {
    {"/", "/"},
    {"/a/b", "/a/b"},
    {"/A/B", "/A/B"},  // case-sensitive
    {"/a/../b", "/b"},
    {"/a/b/../c", "/a/c"},
    {"/a/b/..", "/a/"},
    {"/a/..", "/"},
    {"/a/./b/", "/a/b/"},
    {"/./a", "/a"},
    {"/.", "/"},
    {"/a/.", "/a/"},
    {"/a/%2e", "/a/"},
    {"/a/%2E./b", "/b"},
    {"/a/.%2e/b", "/b"},
    {"/a/%2e%2E/b", "/b"},
    {"/.../a", "/.../a"},  // three dots is an ordinary name
    {"/a..b/c", "/a..b/c"},
    {"//a///b", "/a/b"},
    {"/a/b//", "/a/b/"},
    {"///", "/"},
    {"//a/..", "/"},
    {"/a//b/..", "/a/"},
    {"/%41", "/A"},
    {"/%7e%5F%2D%2e%30", "/~_-.0"},
    {"/a%3a", "/a%3A"},
    {"/a%20b", "/a%20b"},
    {"/a%c3%a9", "/a%C3%A9"},
    {"/a?x=1", "/a", "x=1"},
    {"/a?", "/a", ""},
    {"/a?x=%2F&y=%zz", "/a", "x=%2F&y=%zz"},  // query verbatim
    {"/a?b?c", "/a", "b?c"},
    {"/a/../b?q=/../", "/b", "q=/../"},
    {"/x:y@z;w=1,2", "/x:y@z;w=1,2"},

    {"", std::nullopt},
    {"a/b", std::nullopt},
    {"*", std::nullopt},
    {"http://h/a", std::nullopt},
    {"/..", std::nullopt},
    {"/../a", std::nullopt},
    {"/a/../..", std::nullopt},
    {"/a/../../b", std::nullopt},
    {"/%2e%2e/x", std::nullopt},
    {"/%2E%2E", std::nullopt},
    {"/a//..", std::nullopt},       // "/a/" or "/"? depends on the server
    {"/a//b/../..", std::nullopt},
    {"//..", std::nullopt},
    {"/..;/admin", std::nullopt},   // Tomcat reads "..;" as ".."
    {"/a/.;x/b", std::nullopt},
    {"/a/%2e%2e;/b", std::nullopt},
    {"/a%2fb", std::nullopt},
    {"/a%2Fb", std::nullopt},
    {"/a/..%2F", std::nullopt},
    {"/a%5cb", std::nullopt},
    {"/a%5Cb", std::nullopt},
    {"/a%00", std::nullopt},
    {"/a%252e", std::nullopt},
    {"/a%25", std::nullopt},
    {"/a\\b", std::nullopt},
    {"/a%zz", std::nullopt},
    {"/a%g1", std::nullopt},
    {"/a%", std::nullopt},
    {"/a%4", std::nullopt},
    {"/a%4?x", std::nullopt},
    {"/a#b", std::nullopt},
    {"/a?x#y", std::nullopt},
    {"/a b", std::nullopt},
    {"/a?x y", std::nullopt},
    {"/a\tb", std::nullopt},
    {"/a\r\nb", std::nullopt},
    {std::string("/a\0b", 4), std::nullopt},
    {"/a\x7f", std::nullopt},
    {"/a\xc3\xa9", std::nullopt},
    {"/a?\xff", std::nullopt},
};

} // namespace

TEST_CASE("normalize_target: table of nasty targets")
{
    for (const Case& c : cases) {
        CAPTURE(c.target);
        auto result = normalize_target(c.target);
        if (!c.path) {
            CHECK_FALSE(result.has_value());
            if (!result)
                CHECK_FALSE(result.error().message.empty());
            continue;
        }
        REQUIRE(result.has_value());
        CHECK(result->path == *c.path);
        CHECK(result->query == c.query);
        // Idempotent: a normalised path normalises to itself.
        CHECK(is_normalized_path(result->path));
    }
}

TEST_CASE("normalize_target: reasons name the problem")
{
    auto reason = [](std::string_view target) {
        auto result = normalize_target(target);
        REQUIRE_FALSE(result.has_value());
        return result.error().message;
    };
    CHECK(reason("a") == "request target must start with '/'");
    CHECK(reason("/..") == "request path: '..' climbs above the root");
    CHECK(reason("/a%2fb") == "request path: encoded slash (%2F) at offset 2");
    CHECK(reason("/a%252e") == "request path: encoded percent (%25) at offset 2: double encoding is ambiguous");
    CHECK(reason("/a%") == "request path: truncated percent-escape at offset 2");
    CHECK(reason("/a%zz") == "request path: malformed percent-escape at offset 2");
    CHECK(reason("/a\\b") == "request path: backslash at offset 2");
    CHECK(reason("/a#b") == "request path: '#' (fragment) at offset 2");
    CHECK(reason("/a b") == "request path: byte 0x20 at offset 2 is not printable ASCII");
    CHECK(reason("/a?b#") == "'#' (fragment) in the query");
}

TEST_CASE("is_normalized_path refuses what normalize_target would change")
{
    CHECK(is_normalized_path("/"));
    CHECK(is_normalized_path("/a/b/"));
    CHECK(is_normalized_path("/a%3A"));
    CHECK_FALSE(is_normalized_path(""));
    CHECK_FALSE(is_normalized_path("/a/../b"));
    CHECK_FALSE(is_normalized_path("//a"));
    CHECK_FALSE(is_normalized_path("/%41"));
    CHECK_FALSE(is_normalized_path("/a%3a"));
    CHECK_FALSE(is_normalized_path("/a?x"));
    CHECK_FALSE(is_normalized_path("/a/."));
}
