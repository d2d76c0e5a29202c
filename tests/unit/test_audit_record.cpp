#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "pinfold/address.hpp"
#include "pinfold/audit_log.hpp"

using namespace pinfold;

TEST_CASE("an audit record is one JSON object with every decision field")
{
    AuditRecord r;
    r.event = "http";
    r.verdict = "deny";
    r.sandbox = 42;
    r.pid = 100;
    r.uid = 1000;
    r.cgroup = 43;
    r.destination = "127.0.0.1:80";
    r.host = "example.test";
    r.method = "GET";
    r.path = "/a";
    r.reason = "no rule matched";
    r.status = 403;
    r.bytes_in = 10;
    std::string line = format_audit_record(r, 1'700'000'000'123'456'789);
    CHECK(line.find('\n') == std::string::npos);
    auto j = nlohmann::json::parse(line);
    CHECK(j["time"] == "2023-11-14T22:13:20.123456Z");
    CHECK(j["verdict"] == "deny");
    CHECK(j["sandbox"] == 42);
    CHECK(j["pid"] == 100);
    CHECK(j["uid"] == 1000);
    CHECK(j["cgroup"] == 43);
    CHECK(j["destination"] == "127.0.0.1:80");
    CHECK(j["host"] == "example.test");
    CHECK(j["method"] == "GET");
    CHECK(j["path"] == "/a");
    CHECK(j["rule"].is_null());
    CHECK(j["status"] == 403);
    CHECK(j["bytes_in"] == 10);
    CHECK(j["bytes_out"] == 0);
}

TEST_CASE("hostile bytes in a record cannot break the line")
{
    AuditRecord r;
    r.event = "http";
    r.path = std::string("/a\n{\"verdict\":\"allow\"}\xff\xfe", 23);
    std::string line = format_audit_record(r, 0);
    CHECK(line.find('\n') == std::string::npos);
    auto j = nlohmann::json::parse(line);
    CHECK_FALSE(j.contains("verdict"));
}

TEST_CASE("addresses print as the kernel recorded them")
{
    MappedAddress v4{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    CHECK(is_ipv4_mapped(v4));
    CHECK(endpoint_text(v4, 80) == "127.0.0.1:80");
    MappedAddress v6{};
    v6[15] = 1;
    CHECK_FALSE(is_ipv4_mapped(v6));
    CHECK(endpoint_text(v6, 443) == "[::1]:443");
}
