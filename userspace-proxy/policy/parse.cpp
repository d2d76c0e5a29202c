// YAML -> Policy. Every check runs before anything is returned, and the
// first failure aborts the whole load: a half-read policy is never used.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <initializer_list>
#include <unordered_map>

#include <yaml-cpp/yaml.h>

#include "pinfold/unique_fd.hpp"
#include "pinfold/units.hpp"
#include "policy/policy.hpp"

namespace pinfold::policy {

namespace {

// Far beyond any hand-written policy (10 000 rules are ~1 MiB); a bound so a
// wrong path (a log, a device) fails fast instead of being slurped.
constexpr std::size_t max_policy_bytes = 16u << 20;
constexpr std::size_t max_name_bytes = 128;

std::string kind_of(const YAML::Node& node)
{
    switch (node.Type()) {
    case YAML::NodeType::Null:
        return "null";
    case YAML::NodeType::Scalar:
        return "a scalar";
    case YAML::NodeType::Sequence:
        return "a list";
    case YAML::NodeType::Map:
        return "a mapping";
    case YAML::NodeType::Undefined:
        break;
    }
    return "nothing";
}

// yaml-cpp gives "?" to plain and "!" to quoted untagged nodes. Explicit tags
// other than the standard one for the expected kind (e.g. "!!int 5" where a
// string is expected) are a wrong type.
bool has_plain_tag(const YAML::Node& node, std::string_view standard_tag)
{
    const std::string& tag = node.Tag();
    return tag == "?" || tag == "!" || tag == standard_tag;
}

bool is_name_char(char c, bool allow_upper)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
           (allow_upper && c >= 'A' && c <= 'Z');
}

std::string method_list()
{
    std::string out;
    for (std::string_view method : known_methods) {
        if (!out.empty())
            out += ' ';
        out += method;
    }
    return out;
}

// Empty when valid, otherwise what is wrong.
std::string check_binary(std::string_view binary)
{
    if (binary.empty())
        return "is empty";
    for (char c : binary)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return "contains a control character";
    if (binary.starts_with('/')) {
        if (binary.size() == 1)
            return "'/' is not a program";
        return {};
    }
    if (binary.starts_with("**/")) {
        if (binary.size() == 3)
            return "'**/' names no program";
        return {};
    }
    if (binary.find('/') != std::string_view::npos)
        return "'" + std::string(binary) +
               "' must be an absolute path, a bare program name, or a glob starting with '**/'";
    if (binary == "." || binary == "..")
        return "'" + std::string(binary) + "' is not a program name";
    return {};
}

class PolicyParser {
public:
    explicit PolicyParser(std::string_view source) : source_(source) {}

    Result<Policy> parse(std::string_view text) const;

private:
    struct Entry {
        std::string key;
        YAML::Node key_node;
        YAML::Node value;

        // yaml-cpp marks a null value ("key:" with nothing after it) at the
        // next token, often on another line; the key is where the reader
        // should look.
        [[nodiscard]] YAML::Mark value_mark() const
        {
            return value.IsNull() ? key_node.Mark() : value.Mark();
        }
    };
    using Entries = std::vector<Entry>;

    [[nodiscard]] std::unexpected<Error> error(const YAML::Mark& mark, std::string_view field,
                                               std::string_view what) const;
    [[nodiscard]] Result<Entries> entries(const YAML::Node& map, const std::string& field,
                                          std::initializer_list<std::string_view> allowed) const;
    [[nodiscard]] static const Entry* find(const Entries& entries, std::string_view key);
    [[nodiscard]] Result<std::string> string_value(const YAML::Node& value, const YAML::Mark& mark,
                                                   const std::string& field) const;
    [[nodiscard]] Result<std::vector<std::pair<std::string, YAML::Mark>>>
    string_list(const Entry& entry, const std::string& field) const;
    [[nodiscard]] Result<Rule> rule(const YAML::Node& node, std::size_t index) const;

    std::string source_;
};

std::unexpected<Error> PolicyParser::error(const YAML::Mark& mark, std::string_view field,
                                           std::string_view what) const
{
    std::string message = source_;
    if (!mark.is_null())
        message += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    message += ": ";
    if (!field.empty()) {
        message += "field '";
        message += field;
        message += "': ";
    }
    message += what;
    return fail(std::move(message));
}

Result<PolicyParser::Entries> PolicyParser::entries(
    const YAML::Node& map, const std::string& field,
    std::initializer_list<std::string_view> allowed) const
{
    Entries out;
    for (auto it = map.begin(); it != map.end(); ++it) {
        // Copies: the iterator's operator-> yields a temporary pair, so a
        // reference to it->first would dangle.
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (!key.IsScalar())
            return error(key.Mark(), field, "keys must be plain strings, not " + kind_of(key));
        std::string child = field.empty() ? key.Scalar() : field + "." + key.Scalar();
        if (std::find(allowed.begin(), allowed.end(), key.Scalar()) == allowed.end()) {
            std::string expected;
            for (std::string_view name : allowed)
                expected += (expected.empty() ? "" : ", ") + std::string(name);
            return error(key.Mark(), child, "unknown key (expected one of: " + expected + ")");
        }
        // yaml-cpp keeps duplicate keys and lookups see only the first, so
        // "action: allow" followed by "action: deny" would silently allow.
        if (const Entry* previous = find(out, key.Scalar()))
            return error(key.Mark(), child,
                         "duplicate key (first at line " +
                             std::to_string(previous->key_node.Mark().line + 1) + ")");
        out.push_back(Entry{key.Scalar(), key, value});
    }
    return out;
}

const PolicyParser::Entry* PolicyParser::find(const Entries& entries, std::string_view key)
{
    for (const Entry& entry : entries)
        if (entry.key == key)
            return &entry;
    return nullptr;
}

Result<std::string> PolicyParser::string_value(const YAML::Node& value, const YAML::Mark& mark,
                                               const std::string& field) const
{
    if (!value.IsScalar())
        return error(mark, field, "expected a string, got " + kind_of(value));
    if (!has_plain_tag(value, "tag:yaml.org,2002:str"))
        return error(mark, field, "expected a string, got a value tagged '" + value.Tag() + "'");
    return value.Scalar();
}

Result<std::vector<std::pair<std::string, YAML::Mark>>>
PolicyParser::string_list(const Entry& entry, const std::string& field) const
{
    const YAML::Node& list = entry.value;
    if (!list.IsSequence() || !has_plain_tag(list, "tag:yaml.org,2002:seq"))
        return error(entry.value_mark(), field, "expected a list of strings, got " + kind_of(list));
    if (list.size() == 0)
        return error(entry.value_mark(), field, "list is empty (leave the key out instead)");
    std::vector<std::pair<std::string, YAML::Mark>> out;
    std::size_t i = 0;
    for (auto it = list.begin(); it != list.end(); ++it, ++i) {
        std::string item_field = field + "[" + std::to_string(i) + "]";
        auto text = string_value(*it, it->Mark(), item_field);
        if (!text)
            return std::unexpected(text.error());
        out.emplace_back(std::move(*text), it->Mark());
    }
    return out;
}

Result<Rule> PolicyParser::rule(const YAML::Node& node, std::size_t index) const
{
    const std::string field = "rules[" + std::to_string(index) + "]";
    if (!node.IsMap() || !has_plain_tag(node, "tag:yaml.org,2002:map"))
        return error(node.Mark(), field, "expected a mapping, got " + kind_of(node));
    auto fields = entries(node, field, {"name", "endpoint", "methods", "binaries", "credentials", "action", "tls"});
    if (!fields)
        return std::unexpected(fields.error());

    Rule rule;
    rule.line = node.Mark().line + 1;
    rule.name = field;

    if (const Entry* name = find(*fields, "name")) {
        auto text = string_value(name->value, name->value_mark(), field + ".name");
        if (!text)
            return std::unexpected(text.error());
        if (text->empty() || text->size() > max_name_bytes ||
            !std::all_of(text->begin(), text->end(), [](char c) { return is_name_char(c, true); }))
            return error(name->value_mark(), field + ".name",
                         "'" + *text + "' is not 1 to 128 of [A-Za-z0-9._-]");
        rule.name = std::move(*text);
    }

    const Entry* endpoint = find(*fields, "endpoint");
    if (endpoint == nullptr)
        return error(node.Mark(), field + ".endpoint", "is required");
    auto endpoint_text = string_value(endpoint->value, endpoint->value_mark(), field + ".endpoint");
    if (!endpoint_text)
        return std::unexpected(endpoint_text.error());
    auto parsed = parse_endpoint(*endpoint_text);
    if (!parsed)
        return error(endpoint->value_mark(), field + ".endpoint", parsed.error().message);
    rule.endpoint = std::move(*parsed);

    if (const Entry* methods = find(*fields, "methods")) {
        auto list = string_list(*methods, field + ".methods");
        if (!list)
            return std::unexpected(list.error());
        for (std::size_t i = 0; i < list->size(); ++i) {
            auto& [method, mark] = (*list)[i];
            std::string item_field = field + ".methods[" + std::to_string(i) + "]";
            bool known = std::find(std::begin(known_methods), std::end(known_methods), method) !=
                         std::end(known_methods);
            if (!known) {
                std::string upper = method;
                std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) {
                    return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
                });
                bool known_upper = std::find(std::begin(known_methods), std::end(known_methods),
                                             upper) != std::end(known_methods);
                return error(mark, item_field,
                             known_upper ? "method '" + method + "' must be uppercase ('" + upper + "')"
                                         : "unknown method '" + method + "' (expected one of " +
                                               method_list() + ")");
            }
            if (std::find(rule.methods.begin(), rule.methods.end(), method) != rule.methods.end())
                return error(mark, item_field, "duplicate method '" + method + "'");
            rule.methods.push_back(std::move(method));
        }
    }

    if (const Entry* binaries = find(*fields, "binaries")) {
        auto list = string_list(*binaries, field + ".binaries");
        if (!list)
            return std::unexpected(list.error());
        for (std::size_t i = 0; i < list->size(); ++i) {
            auto& [binary, mark] = (*list)[i];
            if (std::string why = check_binary(binary); !why.empty())
                return error(mark, field + ".binaries[" + std::to_string(i) + "]", why);
            rule.binaries.push_back(std::move(binary));
        }
    }

    if (const Entry* credentials = find(*fields, "credentials")) {
        auto list = string_list(*credentials, field + ".credentials");
        if (!list)
            return std::unexpected(list.error());
        for (std::size_t i = 0; i < list->size(); ++i) {
            auto& [provider, mark] = (*list)[i];
            std::string item_field = field + ".credentials[" + std::to_string(i) + "]";
            if (provider.empty() || provider.size() > max_name_bytes ||
                !std::all_of(provider.begin(), provider.end(), [](char c) { return is_name_char(c, false); }))
                return error(mark, item_field, "'" + provider + "' is not a provider name ([a-z0-9._-])");
            if (std::find(rule.credentials.begin(), rule.credentials.end(), provider) != rule.credentials.end())
                return error(mark, item_field, "duplicate provider '" + provider + "'");
            rule.credentials.push_back(std::move(provider));
        }
    }

    if (const Entry* action = find(*fields, "action")) {
        auto text = string_value(action->value, action->value_mark(), field + ".action");
        if (!text)
            return std::unexpected(text.error());
        if (*text == "allow")
            rule.action = Action::allow;
        else if (*text == "deny")
            rule.action = Action::deny;
        else
            return error(action->value_mark(), field + ".action",
                         "'" + *text + "' is not 'allow' or 'deny'");
    }

    if (const Entry* tls = find(*fields, "tls")) {
        auto text = string_value(tls->value, tls->value_mark(), field + ".tls");
        if (!text)
            return std::unexpected(text.error());
        if (*text == "auto")
            rule.tls = TlsMode::auto_select;
        else if (*text == "passthrough")
            rule.tls = TlsMode::passthrough;
        else if (*text == "intercept")
            rule.tls = TlsMode::intercept;
        else
            return error(tls->value_mark(), field + ".tls",
                         "'" + *text + "' is not 'passthrough', 'intercept' or 'auto'");
        if (rule.endpoint.scheme != "https")
            return error(tls->value_mark(), field + ".tls", "applies only to https:// endpoints");
        // Pass-through never sees a request, so it cannot enforce a method,
        // a path or a deny.
        if (rule.tls == TlsMode::passthrough &&
            (rule.action != Action::allow || !rule.methods.empty() || rule.endpoint.path_glob != "/**" ||
             !rule.binaries.empty()))
            return error(tls->value_mark(), field + ".tls",
                         "passthrough needs an allow rule for all methods and the path '/**', without binaries "
                         "(the proxy cannot see requests it does not decrypt)");
    }
    if (!rule.credentials.empty()) {
        const Entry* credentials = find(*fields, "credentials");
        if (rule.action != Action::allow)
            return error(credentials->value_mark(), field + ".credentials", "only an allow rule can inject credentials");
        if (rule.tls == TlsMode::passthrough)
            return error(credentials->value_mark(), field + ".credentials",
                         "credentials need interception (tls: passthrough never sees the header)");
    }
    return rule;
}

Result<Policy> PolicyParser::parse(std::string_view text) const
{
    // yaml-cpp reads through a std::string; a NUL would end some of its
    // scans early and leave the rest of the file unread.
    if (std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
        std::string_view before = text.substr(0, nul);
        YAML::Mark mark;
        mark.line = static_cast<int>(std::count(before.begin(), before.end(), '\n'));
        std::size_t line_start = before.rfind('\n');
        mark.column = static_cast<int>(line_start == std::string_view::npos ? nul : nul - line_start - 1);
        return error(mark, "", "NUL byte in policy");
    }

    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(std::string(text));
    } catch (const YAML::Exception& e) {
        return error(e.mark, "", "YAML syntax error: " + e.msg);
    }
    YAML::Mark start;  // 1:1
    if (documents.empty() || (documents.size() == 1 && documents.front().IsNull()))
        return error(start, "", "policy is empty");
    if (documents.size() > 1)
        return error(documents[1].Mark(), "", "only one YAML document is allowed per policy file");
    const YAML::Node& root = documents.front();
    if (!root.IsMap() || !has_plain_tag(root, "tag:yaml.org,2002:map"))
        return error(root.Mark(), "", "policy must be a mapping with 'name' and 'rules', got " + kind_of(root));

    auto fields = entries(root, "", {"name", "description", "limits", "providers", "rules"});
    if (!fields)
        return std::unexpected(fields.error());

    Policy policy;
    policy.source = source_;

    const Entry* name = find(*fields, "name");
    if (name == nullptr)
        return error(root.Mark(), "name", "is required");
    auto name_text = string_value(name->value, name->value_mark(), "name");
    if (!name_text)
        return std::unexpected(name_text.error());
    if (name_text->empty() || name_text->size() > max_name_bytes ||
        !std::all_of(name_text->begin(), name_text->end(), [](char c) { return is_name_char(c, false); }))
        return error(name->value_mark(), "name", "'" + *name_text + "' is not 1 to 128 of [a-z0-9._-]");
    policy.name = std::move(*name_text);

    if (const Entry* description = find(*fields, "description")) {
        auto text = string_value(description->value, description->value_mark(), "description");
        if (!text)
            return std::unexpected(text.error());
        // It is printed to terminals: no escape sequences.
        for (char c : *text)
            if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
                return error(description->value_mark(), "description", "contains a control character");
        policy.description = std::move(*text);
    }

    // The agent profile's sandbox limits; pinfold's flags override them.
    if (const Entry* limits = find(*fields, "limits")) {
        if (!limits->value.IsMap() || !has_plain_tag(limits->value, "tag:yaml.org,2002:map"))
            return error(limits->value_mark(), "limits", "expected a mapping, got " + kind_of(limits->value));
        auto items = entries(limits->value, "limits", {"cpus", "memory", "pids", "timeout"});
        if (!items)
            return std::unexpected(items.error());
        for (const Entry& item : *items) {
            std::string field = "limits." + item.key;
            auto text = item.value.IsScalar() ? Result<std::string>(item.value.Scalar())
                                              : string_value(item.value, item.value_mark(), field);
            if (!text)
                return std::unexpected(text.error());
            if (item.key == "cpus") {
                auto cpus = parse_cpus(*text);
                if (!cpus)
                    return error(item.value_mark(), field, cpus.error().message);
                policy.limits.cpus = *cpus;
            } else if (item.key == "memory") {
                auto bytes = parse_size(*text);
                if (!bytes)
                    return error(item.value_mark(), field, bytes.error().message);
                policy.limits.memory_bytes = *bytes;
            } else if (item.key == "pids") {
                char* end = nullptr;
                unsigned long long pids = std::strtoull(text->c_str(), &end, 10);
                if (text->empty() || *end != '\0' || (*text)[0] == '-' || pids < 1 || pids > 4194304)
                    return error(item.value_mark(), field, "'" + *text + "' is not a whole number of tasks");
                policy.limits.pids = pids;
            } else {
                auto timeout = parse_duration(*text);
                if (!timeout)
                    return error(item.value_mark(), field, timeout.error().message);
                policy.limits.timeout = *timeout;
            }
        }
    }

    // Provider files of the agent profile, relative to the policy file, so
    // a profile and its providers move together. Only named here: the
    // loader reads them (and their secrets), the proxy never does.
    if (const Entry* providers = find(*fields, "providers")) {
        auto list = string_list(*providers, "providers");
        if (!list)
            return std::unexpected(list.error());
        std::string_view directory = source_;
        std::size_t slash = directory.rfind('/');
        directory = slash == std::string_view::npos ? std::string_view() : directory.substr(0, slash + 1);
        for (std::size_t i = 0; i < list->size(); ++i) {
            auto& [path, mark] = (*list)[i];
            std::string item_field = "providers[" + std::to_string(i) + "]";
            if (path.empty() || path.ends_with('/') ||
                std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
                return error(mark, item_field, "'" + path + "' is not a provider file path");
            ProviderFileRef ref{path, path.starts_with('/') ? path : std::string(directory) + path, mark.line + 1,
                                mark.column + 1};
            for (const ProviderFileRef& other : policy.providers)
                if (other.resolved == ref.resolved)
                    return error(mark, item_field, "duplicate provider file '" + path + "'");
            policy.providers.push_back(std::move(ref));
        }
    }

    const Entry* rules = find(*fields, "rules");
    if (rules == nullptr)
        return error(root.Mark(), "rules", "is required");
    if (!rules->value.IsSequence() || !has_plain_tag(rules->value, "tag:yaml.org,2002:seq"))
        return error(rules->value_mark(), "rules", "expected a list of rules, got " + kind_of(rules->value));
    if (rules->value.size() == 0)
        return error(rules->value_mark(), "rules", "needs at least one rule");

    std::unordered_map<std::string, int> name_lines;
    std::size_t index = 0;
    for (auto it = rules->value.begin(); it != rules->value.end(); ++it, ++index) {
        auto parsed = rule(*it, index);
        if (!parsed)
            return std::unexpected(parsed.error());
        auto [previous, inserted] = name_lines.emplace(parsed->name, parsed->line);
        if (!inserted)
            return error((*it)["name"].Mark(), "rules[" + std::to_string(index) + "].name",
                         "duplicate rule name '" + parsed->name + "' (first used by the rule at line " +
                             std::to_string(previous->second) + ")");
        policy.rules.push_back(std::move(*parsed));
    }

    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& rule = policy.rules[i];
        if (rule.tls != TlsMode::passthrough)
            continue;
        TlsPlan plan = plan_tls(policy, rule.endpoint.host, rule.endpoint.port, rule.endpoint.wildcard_host);
        if (plan.intercept)
            policy.warnings.push_back("rule '" + rule.name + "' asks for tls: passthrough but " + plan.reason +
                                      " first: connections to " + rule.endpoint.host + " are intercepted");
    }

    return policy;
}

} // namespace

Result<Policy> parse_policy(std::string_view yaml_text, std::string_view source_name)
{
    try {
        return PolicyParser(source_name).parse(yaml_text);
    } catch (const std::exception& e) {
        // yaml-cpp throws on conditions its API does not let us test first.
        return fail(std::string(source_name) + ": cannot parse policy: " + e.what());
    }
}

Result<Policy> load_policy_file(const std::string& path)
{
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (fd.get() < 0)
        return fail_errno("cannot open policy file '" + path + "'");
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0)
        return fail_errno("cannot stat policy file '" + path + "'");
    if (!S_ISREG(info.st_mode))
        return fail("policy file '" + path + "' is not a regular file");
    if (static_cast<std::size_t>(info.st_size) > max_policy_bytes)
        return fail("policy file '" + path + "' is larger than " +
                    std::to_string(max_policy_bytes >> 20) + " MiB");

    std::string text;
    char buffer[65536];
    for (;;) {
        ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno("cannot read policy file '" + path + "'");
        }
        if (got == 0)
            break;
        text.append(buffer, static_cast<std::size_t>(got));
        if (text.size() > max_policy_bytes)
            return fail("policy file '" + path + "' is larger than " +
                        std::to_string(max_policy_bytes >> 20) + " MiB");
    }
    return parse_policy(text, path);
}

} // namespace pinfold::policy
