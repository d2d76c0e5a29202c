#include "pinfold/audit_log.hpp"

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace pinfold {

namespace {

std::string rfc3339_utc(std::int64_t unix_time_ns)
{
    std::time_t seconds = static_cast<std::time_t>(unix_time_ns / 1'000'000'000);
    auto micros = static_cast<long>((unix_time_ns % 1'000'000'000) / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char buf[48];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%06ldZ", micros);
    return buf;
}

} // namespace

std::string format_audit_record(const AuditRecord& r, std::int64_t unix_time_ns)
{
    nlohmann::ordered_json j;
    j["time"] = rfc3339_utc(unix_time_ns);
    j["event"] = r.event;
    if (!r.verdict.empty())
        j["verdict"] = r.verdict;
    j["sandbox"] = r.sandbox;
    j["pid"] = r.pid;
    j["uid"] = r.uid;
    j["cgroup"] = r.cgroup;
    if (!r.exe.empty())
        j["exe"] = r.exe;
    if (!r.exe_id.empty())
        j["exe_id"] = r.exe_id;
    if (!r.identity.empty())
        j["identity"] = r.identity;
    if (!r.destination.empty())
        j["destination"] = r.destination;
    if (!r.host.empty())
        j["host"] = r.host;
    if (!r.method.empty())
        j["method"] = r.method;
    if (!r.path.empty())
        j["path"] = r.path;
    j["rule"] = r.rule.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.rule);
    if (!r.reason.empty())
        j["reason"] = r.reason;
    if (r.status)
        j["status"] = *r.status;
    j["bytes_in"] = r.bytes_in;
    j["bytes_out"] = r.bytes_out;
    // Replace rather than throw on invalid UTF-8 from hostile input.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

AuditLog::~AuditLog()
{
    if (fd_ >= 0)
        ::close(fd_);
}

void AuditLog::write(const AuditRecord& record) noexcept
{
    if (fd_ < 0)
        return;
    try {
        auto now = std::chrono::system_clock::now().time_since_epoch();
        std::string line = format_audit_record(
            record, std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
        line.push_back('\n');
        ssize_t n = ::write(fd_, line.data(), line.size());
        if (n != static_cast<ssize_t>(line.size()))
            ++failed_writes_;
    } catch (...) {
        ++failed_writes_;
    }
}

} // namespace pinfold
