#pragma once
// The audit log: one JSON object per decision, one line each, appended
// with a single write() so lines from the loader and the proxy never
// interleave. Never carries secrets or bodies.

#include <cstdint>
#include <optional>
#include <string>

namespace pinfold {

struct AuditRecord {
    std::string event;          // "http", "connect", "socket", "sendmsg", "proxy", "run"
    std::string verdict;        // "allow", "deny", or "" for plain events
    std::uint64_t sandbox = 0;  // cgroup id of the sandbox
    std::uint32_t pid = 0;
    std::uint32_t uid = 0;
    std::uint64_t cgroup = 0;
    std::string exe;            // connecting executable, for humans (informative)
    std::string exe_id;         // its kernel-captured identity "st_dev:st_ino"
    std::string identity;       // set when exe_id is not kernel-attested: how it was obtained
    std::string destination;    // original destination "addr:port" / "[addr]:port"
    std::string host;
    std::string method;
    std::string path;
    std::string rule;           // rule name; "" when none matched
    std::string reason;
    std::optional<int> status;  // HTTP status sent to the client
    std::uint64_t bytes_in = 0;  // request bytes from the client
    std::uint64_t bytes_out = 0; // response bytes to the client
    // Plain HTTP: the upstream connection was "new", "reused" (from the
    // idle pool), "kept" (this client connection's previous one) or
    // "retry" (new, after a reused one failed before responding).
    std::string upstream;
};

// The JSON line (without the newline) for a record at `unix_time_ns`.
[[nodiscard]] std::string format_audit_record(const AuditRecord& record, std::int64_t unix_time_ns);

// Appends the JSON line (without the newline) for a record to `out`.
void append_audit_record(std::string& out, const AuditRecord& record, std::int64_t unix_time_ns);

class AuditLog {
public:
    // Takes ownership of fd (-1: audit disabled).
    explicit AuditLog(int fd) noexcept;
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;
    ~AuditLog();   // flushes

    // Never throws; a failed write is counted, not fatal (the decision
    // itself has already been enforced). Unbuffered: written at once.
    // Buffered: held until flush(), or until the batch is as large as one
    // write() may be without lines of other writers interleaving.
    void write(const AuditRecord& record) noexcept;
    // An event loop batches the records of one wake-up and flushes before
    // it blocks again (and before it exits).
    void set_buffered(bool buffered) noexcept;
    void flush() noexcept;
    [[nodiscard]] std::uint64_t failed_writes() const noexcept { return failed_writes_; }

private:
    int fd_;
    bool buffered_ = false;
    std::size_t batch_limit_ = 4096;   // PIPE_BUF unless fd_ is a regular file
    std::string pending_;
    std::uint64_t failed_writes_ = 0;
};

} // namespace pinfold
