#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_map>

#include "policy/path_glob.hpp"
#include "policy/policy.hpp"

namespace pinfold::policy {

namespace {

constexpr std::uint8_t all_methods = (1u << std::size(known_methods)) - 1;

std::uint8_t method_bit(std::string_view method)
{
    for (std::size_t i = 0; i < std::size(known_methods); ++i)
        if (known_methods[i] == method)
            return static_cast<std::uint8_t>(1u << i);
    return 0;
}

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept
    {
        return std::hash<std::string_view>{}(text);
    }
};

// Rule indices per host key, ascending, so each list is already in
// first-match-wins order.
using HostIndex = std::unordered_map<std::string, std::vector<std::uint32_t>, StringHash, std::equal_to<>>;

std::uint16_t default_port(std::string_view scheme)
{
    return scheme == "https" ? 443 : 80;
}

bool is_canonical_host(const Endpoint& endpoint)
{
    if (endpoint.wildcard_host) {
        auto name = canonical_dns_name(endpoint.host);
        return name && *name == endpoint.host;
    }
    if (auto ip = canonical_ip(endpoint.host))
        return *ip == endpoint.host;
    auto name = canonical_dns_name(endpoint.host);
    return name && *name == endpoint.host;
}

Decision deny_without_rule(std::string reason)
{
    return Decision{false, -1, "", std::move(reason)};
}

} // namespace

struct CompiledPolicy::Index {
    struct Matcher {
        PathGlob glob;
        std::uint8_t methods;
        bool any_binary;                 // the rule names no binaries
        std::vector<ExeIdentity> binaries;  // sorted, for binary search

        [[nodiscard]] bool admits(ExeIdentity exe) const
        {
            return any_binary ||
                   (exe.known() && std::binary_search(binaries.begin(), binaries.end(), exe));
        }
    };

    Policy policy;
    BinaryTable binaries;
    std::vector<std::pair<ExeIdentity, const ResolvedBinary*>> files;  // sorted by identity
    std::vector<Matcher> matchers;  // parallel to policy.rules
    HostIndex exact;                // DNS names and IP literals
    HostIndex wildcard;             // suffix of "*.suffix"
};

CompiledPolicy::CompiledPolicy(std::shared_ptr<const Index> index) : index_(std::move(index)) {}

Result<CompiledPolicy> CompiledPolicy::compile(Policy policy)
{
    const char* path = std::getenv("PATH");
    auto table = resolve_policy_binaries(policy, search_from_path_variable(path ? path : ""), policy.warnings);
    if (!table)
        return std::unexpected(table.error());
    return compile(std::move(policy), std::move(*table));
}

Result<CompiledPolicy> CompiledPolicy::compile(Policy policy, BinaryTable binaries)
{
    if (policy.rules.size() > static_cast<std::size_t>(INT_MAX))
        return fail(policy.source + ": too many rules");

    auto index = std::make_shared<Index>();
    index->matchers.reserve(policy.rules.size());
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& rule = policy.rules[i];
        const Endpoint& endpoint = rule.endpoint;
        auto invalid = [&](const std::string& what) {
            return fail(policy.source + ":" + std::to_string(rule.line) + ": rule '" + rule.name +
                        "': " + what);
        };

        if (endpoint.scheme != "http" && endpoint.scheme != "https")
            return invalid("scheme '" + endpoint.scheme + "' is not 'http' or 'https'");
        if (endpoint.port == 0)
            return invalid("port 0");
        if (!is_canonical_host(endpoint))
            return invalid("host '" + endpoint.host + "' is not in canonical form");
        if (rule.action != Action::allow && rule.action != Action::deny)
            return invalid("action is neither allow nor deny");

        std::uint8_t methods = rule.methods.empty() ? all_methods : 0;
        for (const std::string& method : rule.methods) {
            std::uint8_t bit = method_bit(method);
            if (bit == 0)
                return invalid("unknown method '" + method + "'");
            methods |= bit;
        }
        auto glob = PathGlob::compile(endpoint.path_glob);
        if (!glob)
            return invalid(glob.error().message);

        Index::Matcher matcher{std::move(*glob), methods, rule.binaries.empty(), {}};
        for (const std::string& entry : rule.binaries) {
            auto files = binaries.find(entry);
            if (files == binaries.end())
                return invalid("binaries entry '" + entry + "' was not resolved");
            for (const ResolvedBinary& file : files->second)
                matcher.binaries.push_back(file.id);
        }
        std::sort(matcher.binaries.begin(), matcher.binaries.end());
        index->matchers.push_back(std::move(matcher));
        HostIndex& by_host = endpoint.wildcard_host ? index->wildcard : index->exact;
        by_host[endpoint.host].push_back(static_cast<std::uint32_t>(i));
    }
    index->policy = std::move(policy);
    index->binaries = std::move(binaries);
    for (const auto& [entry, files] : index->binaries)
        for (const ResolvedBinary& file : files)
            index->files.emplace_back(file.id, &file);
    std::stable_sort(index->files.begin(), index->files.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    return CompiledPolicy(std::move(index));
}

const Policy& CompiledPolicy::policy() const
{
    static const Policy empty;
    return index_ ? index_->policy : empty;
}

const BinaryTable& CompiledPolicy::binaries() const
{
    static const BinaryTable empty;
    return index_ ? index_->binaries : empty;
}

const ResolvedBinary* CompiledPolicy::binary_of(ExeIdentity id) const
{
    if (!index_ || !id.known())
        return nullptr;
    auto it = std::lower_bound(index_->files.begin(), index_->files.end(), id,
                               [](const auto& entry, ExeIdentity key) { return entry.first < key; });
    return it != index_->files.end() && it->first == id ? it->second : nullptr;
}

Decision CompiledPolicy::decide(const Request& request) const
{
    if (!index_)
        return deny_without_rule("no policy loaded");
    if (request.scheme != "http" && request.scheme != "https")
        return deny_without_rule("scheme is not http or https");
    auto host = canonical_request_host(request.host);
    if (!host)
        return deny_without_rule("host is neither a valid DNS name nor an IP address");
    if (!is_normalized_path(request.path))
        return deny_without_rule("path is not normalised");
    std::uint8_t method = method_bit(request.method);
    if (method == 0)
        return deny_without_rule("no rule matched");

    // thread_local: decide() is const and may run on several threads.
    thread_local std::vector<std::string_view> segments;
    PathGlob::split_segments(request.path, segments);

    const Index& index = *index_;
    constexpr std::uint32_t none = UINT32_MAX;
    std::uint32_t best = none;
    // The first allow rule that matched everything but the executable:
    // what a denied client most needs to be told.
    std::uint32_t binary_miss = none;
    // Each list is ascending; the earliest match over all lists wins, which
    // is what a linear scan of the whole rule list would have found.
    auto scan = [&](const std::vector<std::uint32_t>& candidates) {
        for (std::uint32_t i : candidates) {
            if (i >= best)
                return;
            const Endpoint& endpoint = index.policy.rules[i].endpoint;
            const Index::Matcher& matcher = index.matchers[i];
            if (endpoint.port == request.port && (matcher.methods & method) != 0 &&
                endpoint.scheme == request.scheme && matcher.glob.matches(segments)) {
                if (!matcher.admits(request.exe)) {
                    if (index.policy.rules[i].action == Action::allow && i < binary_miss)
                        binary_miss = i;
                    continue;
                }
                best = i;
                return;
            }
        }
    };
    if (auto it = index.exact.find(*host); it != index.exact.end())
        scan(it->second);
    if (!index.wildcard.empty()) {
        // Proper suffixes only: "*.example.com" never matches the apex.
        std::string_view name = *host;
        for (std::size_t dot = name.find('.'); dot != std::string_view::npos;
             dot = name.find('.', dot + 1)) {
            if (auto it = index.wildcard.find(name.substr(dot + 1)); it != index.wildcard.end())
                scan(it->second);
        }
    }
    std::string miss;
    if (binary_miss != none && binary_miss < best) {
        const Rule& rule = index.policy.rules[binary_miss];
        miss = "executable ";
        miss += request.exe_name.empty() ? std::string_view("(unknown)") : request.exe_name;
        miss += " (" + (request.exe.known() ? identity_text(request.exe) : std::string("identity not captured")) +
                ") is not one of the binaries of rule '" + rule.name + "' [";
        for (std::size_t b = 0; b < rule.binaries.size(); ++b)
            miss += (b ? ", " : "") + rule.binaries[b];
        miss += "]";
    }
    if (best == none)
        return deny_without_rule(miss.empty() ? "no rule matched" : miss + "; no other rule matched");

    const Rule& rule = index.policy.rules[best];
    bool allowed = rule.action == Action::allow;
    std::string reason = "rule '" + rule.name + (allowed ? "' allows " : "' denies ");
    reason += request.method;
    reason += ' ';
    reason += request.scheme;
    reason += "://";
    if (host->find(':') != std::string::npos)
        reason += '[' + *host + ']';
    else
        reason += *host;
    if (request.port != default_port(request.scheme))
        reason += ':' + std::to_string(request.port);
    reason += request.path;
    if (!allowed && !miss.empty())
        reason = miss + "; " + reason;
    return Decision{allowed, static_cast<int>(best), rule.name, std::move(reason)};
}

} // namespace pinfold::policy
