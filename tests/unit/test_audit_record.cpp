#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sstream>

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

TEST_CASE("an audit line keeps the schema's field order and leaves out empty fields")
{
    AuditRecord r;
    r.event = "http";
    r.verdict = "allow";
    r.sandbox = 1;
    r.pid = 2;
    r.uid = 3;
    r.cgroup = 4;
    r.destination = "[::1]:443";
    r.host = "h";
    r.method = "GET";
    r.path = "/";
    r.rule = "r";
    r.status = 200;
    r.bytes_in = 5;
    r.bytes_out = 18446744073709551615ull;
    CHECK(format_audit_record(r, 59'000'001'000) ==
          "{\"time\":\"1970-01-01T00:00:59.000001Z\",\"event\":\"http\",\"verdict\":\"allow\",\"sandbox\":1,"
          "\"pid\":2,\"uid\":3,\"cgroup\":4,\"destination\":\"[::1]:443\",\"host\":\"h\",\"method\":\"GET\","
          "\"path\":\"/\",\"rule\":\"r\",\"status\":200,\"bytes_in\":5,\"bytes_out\":18446744073709551615}");
    AuditRecord bare;
    bare.event = "connect";
    CHECK(format_audit_record(bare, 0) ==
          "{\"time\":\"1970-01-01T00:00:00.000000Z\",\"event\":\"connect\",\"sandbox\":0,\"pid\":0,\"uid\":0,"
          "\"cgroup\":0,\"rule\":null,\"bytes_in\":0,\"bytes_out\":0}");
}

TEST_CASE("the time's second is cached but never stale")
{
    AuditRecord r;
    r.event = "x";
    auto time_of = [&](std::int64_t ns) { return nlohmann::json::parse(format_audit_record(r, ns))["time"]; };
    CHECK(time_of(1'700'000'000'000'000'000) == "2023-11-14T22:13:20.000000Z");
    CHECK(time_of(1'700'000'000'999'999'999) == "2023-11-14T22:13:20.999999Z");
    CHECK(time_of(1'700'000'001'000'000'000) == "2023-11-14T22:13:21.000000Z");
    CHECK(time_of(1'700'000'000'000'000'000) == "2023-11-14T22:13:20.000000Z");
}

TEST_CASE("strings are escaped so that a JSON parser reads back exactly them")
{
    const std::string cases[] = {
        "plain",
        "quote \" backslash \\ slash /",
        std::string("controls \b\f\n\r\t \x01\x1f\x7f end", 25),
        std::string("nul \0 inside", 12),
        "utf-8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
        "{\"verdict\":\"allow\"}",
    };
    for (const std::string& text : cases) {
        AuditRecord r;
        r.event = "http";
        r.path = text;
        r.reason = text;
        std::string line = format_audit_record(r, 0);
        CHECK(line.find('\n') == std::string::npos);
        auto j = nlohmann::json::parse(line);
        CHECK(j["path"] == text);
        CHECK(j["reason"] == text);
        CHECK_FALSE(j.contains("verdict"));
    }
}

TEST_CASE("bytes that are not UTF-8 become U+FFFD, one per byte")
{
    const std::string replacement = "\xef\xbf\xbd";
    struct Case {
        std::string in, out;
    };
    const Case cases[] = {
        {"a\xff" "b", "a" + replacement + "b"},
        {"\xc0\xaf", replacement + replacement},                              // overlong '/'
        {"\xe0\x80\xaf", replacement + replacement + replacement},            // overlong, 3 bytes
        {"\xed\xa0\x80", replacement + replacement + replacement},            // surrogate D800
        {"\xf4\x90\x80\x80", replacement + replacement + replacement + replacement},   // above U+10FFFF
        {"end \xe2\x82", "end " + replacement + replacement},                 // cut short
        {"\x80", replacement},                                                // lone continuation
    };
    for (const Case& c : cases) {
        AuditRecord r;
        r.event = "http";
        r.host = c.in;
        auto j = nlohmann::json::parse(format_audit_record(r, 0));
        CHECK(j["host"] == c.out);
    }
}

namespace {

std::string file_text(int fd)
{
    std::string text;
    char buf[4096];
    for (off_t off = 0;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, off);
        if (n <= 0)
            return text;
        text.append(buf, static_cast<std::size_t>(n));
        off += n;
    }
}

} // namespace

TEST_CASE("a buffered audit log writes its batch on flush and when it is destroyed")
{
    int fd = ::memfd_create("audit-test", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    int view = ::dup(fd);
    {
        AuditLog log(fd);
        log.set_buffered(true);
        AuditRecord r;
        r.event = "http";
        log.write(r);
        log.write(r);
        CHECK(file_text(view).empty());
        log.flush();
        CHECK(file_text(view).size() > 0);
        r.event = "last";
        log.write(r);
    }
    std::istringstream lines(file_text(view));
    std::string line;
    std::vector<std::string> events;
    while (std::getline(lines, line))
        events.push_back(nlohmann::json::parse(line)["event"]);
    CHECK(events == std::vector<std::string>{"http", "http", "last"});
    ::close(view);
}

TEST_CASE("a batch to a pipe never splits a line across writes")
{
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    ::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    {
        AuditLog log(p[1]);
        log.set_buffered(true);
        AuditRecord r;
        r.event = "http";
        r.reason = std::string(900, 'x');
        for (int i = 0; i < 40; ++i)
            log.write(r);
    }
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;)
        text.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    std::istringstream lines(text);
    std::string line;
    int count = 0;
    while (std::getline(lines, line)) {
        CHECK(nlohmann::json::parse(line)["reason"].get<std::string>().size() == 900);
        ++count;
    }
    CHECK(count == 40);
}

TEST_CASE("IPv4 endpoints print every octet and port in decimal")
{
    MappedAddress a{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 255, 0, 10, 200};
    CHECK(endpoint_text(a, 65535) == "255.0.10.200:65535");
    MappedAddress z{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    CHECK(endpoint_text(z, 0) == "0.0.0.0:0");
}
