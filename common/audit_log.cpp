#include "pinfold/audit_log.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <string_view>

#include <fmt/format.h>

namespace pinfold {

namespace {

// "YYYY-MM-DDTHH:MM:SS" of the last second formatted: a busy proxy writes
// many records per second, and strftime is most of a record's cost.
struct SecondText {
    std::int64_t second = -1;
    char text[24] = {};
    std::size_t size = 0;
};

void append_rfc3339_utc(std::string& out, std::int64_t unix_time_ns)
{
    thread_local SecondText cache;
    std::int64_t seconds = unix_time_ns / 1'000'000'000;
    auto micros = static_cast<long>((unix_time_ns % 1'000'000'000) / 1000);
    if (seconds != cache.second) {
        auto t = static_cast<std::time_t>(seconds);
        std::tm tm{};
        gmtime_r(&t, &tm);
        cache.size = std::strftime(cache.text, sizeof cache.text, "%Y-%m-%dT%H:%M:%S", &tm);
        cache.second = seconds;
    }
    out.append(cache.text, cache.size);
    char fraction[8] = {'.', '0', '0', '0', '0', '0', '0', 'Z'};
    for (int digit = 6; digit >= 1 && micros > 0; --digit, micros /= 10)
        fraction[digit] = static_cast<char>('0' + micros % 10);
    out.append(fraction, sizeof fraction);
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), 0 when it is not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept
{
    auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char b = at(i);
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xbf;   // bounds of the second byte
    if (b >= 0xc2 && b <= 0xdf) {
        len = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (s.size() - i < len)
        return 0;
    if (at(i + 1) < lo || at(i + 1) > hi)
        return 0;
    for (std::size_t k = 2; k < len; ++k)
        if (at(i + k) < 0x80 || at(i + k) > 0xbf)
            return 0;
    return len;
}

// A JSON string literal. Hostile input (a path, a Host) cannot end the
// string or the line: quotes, backslashes and control bytes are escaped,
// and bytes that are not UTF-8 become U+FFFD, one per byte.
void append_json_string(std::string& out, std::string_view s)
{
    static constexpr char hex[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t i = 0;
    while (i < s.size()) {
        // The common case: a run of printable ASCII needing no escape.
        std::size_t run = i;
        while (run < s.size()) {
            auto c = static_cast<unsigned char>(s[run]);
            if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80)
                break;
            ++run;
        }
        out.append(s.data() + i, run - i);
        i = run;
        if (i == s.size())
            break;
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            std::size_t len = utf8_sequence(s, i);
            if (len == 0) {
                out.append("\xef\xbf\xbd");
                ++i;
            } else {
                out.append(s.data() + i, len);
                i += len;
            }
            continue;
        }
        switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\b': out.append("\\b"); break;
        case '\f': out.append("\\f"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default:
            out.append("\\u00");
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
        ++i;
    }
    out.push_back('"');
}

void append_field(std::string& out, std::string_view name, std::string_view value)
{
    out.append(",\"");
    out.append(name);
    out.append("\":");
    append_json_string(out, value);
}

// fmt::format_int writes into its own buffer: no format string to parse
// and no back_inserter growth, on every record.
template <typename T>
void append_number(std::string& out, std::string_view prefix, T value)
{
    const fmt::format_int text(value);
    out.append(prefix);
    out.append(text.data(), text.size());
}

void append_optional(std::string& out, std::string_view name, const std::string& value)
{
    if (!value.empty())
        append_field(out, name, value);
}

} // namespace

void append_audit_record(std::string& out, const AuditRecord& r, std::int64_t unix_time_ns)
{
    // Field order and presence are the schema (docs/architecture.md):
    // optional strings are left out when empty, "rule" is null when none.
    out.append("{\"time\":\"");
    append_rfc3339_utc(out, unix_time_ns);
    out.push_back('"');
    append_field(out, "event", r.event);
    append_optional(out, "verdict", r.verdict);
    append_number(out, ",\"sandbox\":", r.sandbox);
    append_number(out, ",\"pid\":", r.pid);
    append_number(out, ",\"uid\":", r.uid);
    append_number(out, ",\"cgroup\":", r.cgroup);
    append_optional(out, "exe", r.exe);
    append_optional(out, "exe_id", r.exe_id);
    append_optional(out, "identity", r.identity);
    append_optional(out, "destination", r.destination);
    append_optional(out, "host", r.host);
    append_optional(out, "method", r.method);
    append_optional(out, "path", r.path);
    if (r.rule.empty())
        out.append(",\"rule\":null");
    else
        append_field(out, "rule", r.rule);
    append_optional(out, "reason", r.reason);
    if (r.status)
        append_number(out, ",\"status\":", *r.status);
    append_number(out, ",\"bytes_in\":", r.bytes_in);
    append_number(out, ",\"bytes_out\":", r.bytes_out);
    append_optional(out, "upstream", r.upstream);
    out.push_back('}');
}

std::string format_audit_record(const AuditRecord& r, std::int64_t unix_time_ns)
{
    std::string line;
    append_audit_record(line, r, unix_time_ns);
    return line;
}

AuditLog::AuditLog(int fd) noexcept : fd_(fd)
{
    // O_APPEND writes to a regular file land whole; to a pipe only up to
    // PIPE_BUF bytes are guaranteed not to interleave with the loader's.
    struct stat st{};
    if (fd_ >= 0 && ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode))
        batch_limit_ = 64 * 1024;
    else
        batch_limit_ = PIPE_BUF;
}

AuditLog::~AuditLog()
{
    flush();
    if (fd_ >= 0)
        ::close(fd_);
}

void AuditLog::set_buffered(bool buffered) noexcept
{
    if (!buffered)
        flush();
    buffered_ = buffered;
}

void AuditLog::write(const AuditRecord& record) noexcept
{
    if (fd_ < 0)
        return;
    try {
        auto now = std::chrono::system_clock::now().time_since_epoch();
        std::size_t before = pending_.size();
        append_audit_record(pending_, record, std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
        pending_.push_back('\n');
        // A line never straddles two writes: flush what came before it
        // when it would not fit in the same one.
        if (before > 0 && pending_.size() > batch_limit_) {
            std::string line = pending_.substr(before);
            pending_.resize(before);
            flush();
            pending_ = std::move(line);
        }
    } catch (...) {
        ++failed_writes_;
        return;
    }
    if (!buffered_ || pending_.size() >= batch_limit_)
        flush();
}

void AuditLog::flush() noexcept
{
    if (pending_.empty())
        return;
    if (fd_ >= 0) {
        // One write per batch; a short write (a full disk) is retried
        // once from where it stopped, then counted as lost.
        std::size_t done = 0;
        for (int attempt = 0; attempt < 2 && done < pending_.size(); ++attempt) {
            ssize_t n = ::write(fd_, pending_.data() + done, pending_.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += static_cast<std::size_t>(n);
        }
        if (done != pending_.size())
            ++failed_writes_;
    }
    pending_.clear();
}

} // namespace pinfold
