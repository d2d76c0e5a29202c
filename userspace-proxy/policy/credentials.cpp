// Provider files, secret sources and the set the proxy holds.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>

#include <yaml-cpp/yaml.h>

#include "policy/credentials.hpp"

namespace pinfold::policy {

namespace {

constexpr std::size_t max_provider_bytes = 64 * 1024;
constexpr std::size_t max_secret_bytes = 16 * 1024;

bool is_variable(std::string_view s)
{
    if (s.empty() || s.size() > 128 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
}

bool is_provider_name(std::string_view s)
{
    return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    });
}

bool is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A header value we may put on the wire: no control character but HTAB.
bool is_field_value(std::string_view s)
{
    return std::none_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\t') || u == 0x7f;
    });
}

class ProviderParser {
public:
    explicit ProviderParser(std::string_view source) : source_(source) {}

    std::unexpected<Error> error(const YAML::Mark& mark, std::string_view field, std::string_view what) const
    {
        std::string message = source_;
        if (!mark.is_null())
            message += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
        message += ": ";
        if (!field.empty())
            message += "field '" + std::string(field) + "': ";
        message += what;
        return fail(std::move(message));
    }

    // Every key known, none repeated; the value of `key` when present.
    Result<void> check_keys(const YAML::Node& map, const std::string& field,
                            std::initializer_list<std::string_view> allowed) const
    {
        std::vector<std::string> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const YAML::Node key = it->first;
            if (!key.IsScalar())
                return error(key.Mark(), field, "keys must be plain strings");
            std::string child = field.empty() ? key.Scalar() : field + "." + key.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key.Scalar()) == allowed.end()) {
                std::string expected;
                for (std::string_view a : allowed)
                    expected += (expected.empty() ? "" : ", ") + std::string(a);
                return error(key.Mark(), child, "unknown key (expected one of: " + expected + ")");
            }
            if (std::find(seen.begin(), seen.end(), key.Scalar()) != seen.end())
                return error(key.Mark(), child, "duplicate key");
            seen.push_back(key.Scalar());
        }
        return {};
    }

    Result<std::string> string_at(const YAML::Node& map, const std::string& key, const std::string& field,
                                  bool required) const
    {
        const YAML::Node value = map[key];
        if (!value.IsDefined() || value.IsNull()) {
            if (required)
                return error(value.IsDefined() ? value.Mark() : map.Mark(), field, "is required");
            return std::string();
        }
        if (!value.IsScalar())
            return error(value.Mark(), field, "expected a string");
        return value.Scalar();
    }

    Result<Provider> parse(std::string_view text) const
    {
        YAML::Node root;
        try {
            root = YAML::Load(std::string(text));
        } catch (const YAML::Exception& e) {
            return error(e.mark, "", "YAML syntax error: " + e.msg);
        }
        if (!root.IsMap())
            return error(root.Mark(), "", "a provider must be a mapping with name, type and config");
        if (auto r = check_keys(root, "", {"name", "type", "source", "sandbox_env", "config"}); !r)
            return std::unexpected(r.error());
        Provider p;
        p.origin = source_;
        auto name = string_at(root, "name", "name", true);
        if (!name)
            return std::unexpected(name.error());
        if (!is_provider_name(*name))
            return error(root["name"].Mark(), "name", "'" + *name + "' is not 1 to 128 of [a-z0-9._-]");
        p.name = *name;
        auto type = string_at(root, "type", "type", true);
        if (!type)
            return std::unexpected(type.error());
        if (*type != "header" && *type != "basic")
            return error(root["type"].Mark(), "type",
                         "'" + *type + "' is not a known type (expected: header, basic)");
        p.type = *type;
        const bool basic = p.type == "basic";
        // For basic the template and placeholder are the password's; the
        // header value is built from them.
        const std::string template_key = basic ? "password_template" : "value_template";
        const YAML::Node config = root["config"];
        if (!config.IsDefined() || !config.IsMap())
            return error(config.IsDefined() ? config.Mark() : root.Mark(), "config",
                         basic ? "is required: a mapping with username, password_template and placeholder"
                               : "is required: a mapping with header, value_template and placeholder");
        if (auto r = basic ? check_keys(config, "config", {"username", "password_template", "placeholder"})
                           : check_keys(config, "config", {"header", "value_template", "placeholder"});
            !r)
            return std::unexpected(r.error());
        if (basic) {
            auto username = string_at(config, "username", "config.username", true);
            if (!username)
                return std::unexpected(username.error());
            // RFC 7617: the user-id cannot contain a colon.
            if (username->empty() || username->find(':') != std::string::npos || !is_field_value(*username))
                return error(config["username"].Mark(), "config.username",
                             "'" + *username + "' must be non-empty, without ':' or control characters");
            p.username = *username;
            p.header = "Authorization";
        } else {
            auto header = string_at(config, "header", "config.header", true);
            if (!header)
                return std::unexpected(header.error());
            if (header->empty() || !std::all_of(header->begin(), header->end(), is_token_char))
                return error(config["header"].Mark(), "config.header", "'" + *header + "' is not a header name");
            p.header = *header;
        }
        const std::string template_field = "config." + template_key;
        auto tmpl = string_at(config, template_key, template_field, true);
        if (!tmpl)
            return std::unexpected(tmpl.error());
        std::size_t open = tmpl->find("{{");
        std::size_t close = open == std::string::npos ? std::string::npos : tmpl->find("}}", open);
        if (open == std::string::npos || close == std::string::npos)
            return error(config[template_key].Mark(), template_field, "needs exactly one {{NAME}} where the secret goes");
        std::string variable = tmpl->substr(open + 2, close - open - 2);
        if (!is_variable(variable))
            return error(config[template_key].Mark(), template_field,
                         "'{{" + variable + "}}': the name must be [A-Za-z_][A-Za-z0-9_]*");
        if (tmpl->find("{{", close) != std::string::npos || tmpl->find("}}", close + 2) != std::string::npos)
            return error(config[template_key].Mark(), template_field, "needs exactly one {{NAME}} where the secret goes");
        if (!is_field_value(*tmpl))
            return error(config[template_key].Mark(), template_field, "contains a control character");
        p.value_template = *tmpl;
        p.variable = variable;
        std::string prefix = tmpl->substr(0, open);
        std::string suffix = tmpl->substr(close + 2);
        auto placeholder = string_at(config, "placeholder", "config.placeholder", true);
        if (!placeholder)
            return std::unexpected(placeholder.error());
        // The placeholder is the template with a token where the secret
        // goes, so a tool given only the token builds the right header.
        if (placeholder->size() <= prefix.size() + suffix.size() || !placeholder->starts_with(prefix) ||
            !placeholder->ends_with(suffix))
            return error(config["placeholder"].Mark(), "config.placeholder",
                         "must be the " + template_key + " with a token in place of {{" + variable + "}}");
        p.placeholder = *placeholder;
        p.token = placeholder->substr(prefix.size(), placeholder->size() - prefix.size() - suffix.size());
        // Short tokens would match ordinary text (and be redacted from it).
        if (p.token.size() < 8 || !is_field_value(p.token) || p.token.find(' ') != std::string::npos)
            return error(config["placeholder"].Mark(), "config.placeholder",
                         "the token '" + p.token + "' must be at least 8 characters without spaces or controls");
        if (basic)
            p.placeholder = "Basic " + base64_encode(p.username + ":" + p.placeholder);
        auto source = string_at(root, "source", "source", false);
        if (!source)
            return std::unexpected(source.error());
        p.source = source->empty() ? "env:" + variable : *source;
        if (p.source.starts_with("env:")) {
            if (!is_variable(std::string_view(p.source).substr(4)))
                return error(root["source"].Mark(), "source", "'" + p.source + "': env: needs a variable name");
        } else if (p.source.starts_with("file:")) {
            if (!std::string_view(p.source).substr(5).starts_with('/'))
                return error(root["source"].Mark(), "source", "'" + p.source + "': file: needs an absolute path");
        } else {
            return error(root["source"].Mark(), "source", "'" + p.source + "' is not env:NAME or file:/PATH");
        }
        auto env = string_at(root, "sandbox_env", "sandbox_env", false);
        if (!env)
            return std::unexpected(env.error());
        if (!env->empty() && !is_variable(*env))
            return error(root["sandbox_env"].Mark(), "sandbox_env", "'" + *env + "' is not a variable name");
        p.sandbox_env = *env;
        return p;
    }

private:
    std::string source_;
};

Result<std::string> read_small_file(const std::string& path, std::size_t limit, std::string_view what)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail_errno("cannot open " + std::string(what) + " '" + path + "'");
    std::string text;
    char buffer[4096];
    for (;;) {
        ssize_t got = ::read(fd, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            auto err = fail_errno("cannot read " + std::string(what) + " '" + path + "'");
            ::close(fd);
            return err;
        }
        if (got == 0)
            break;
        text.append(buffer, static_cast<std::size_t>(got));
        if (text.size() > limit) {
            ::close(fd);
            return fail(std::string(what) + " '" + path + "' is larger than " + std::to_string(limit) + " bytes");
        }
    }
    ::close(fd);
    return text;
}

void append_field(std::string& out, std::string_view field)
{
    out += std::to_string(field.size());
    out += ':';
    out += field;
    out += '\n';
}

Result<std::string> take_field(std::string_view& in)
{
    std::size_t colon = in.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 8)
        return fail("credential set: malformed length");
    std::size_t size = 0;
    for (char c : in.substr(0, colon)) {
        if (c < '0' || c > '9')
            return fail("credential set: malformed length");
        size = size * 10 + static_cast<std::size_t>(c - '0');
    }
    if (in.size() < colon + 1 + size + 1 || in[colon + 1 + size] != '\n')
        return fail("credential set: truncated field");
    std::string field(in.substr(colon + 1, size));
    in.remove_prefix(colon + 1 + size + 1);
    return field;
}

void replace_all(std::string& text, std::string_view needle, std::string_view with)
{
    if (needle.empty())
        return;
    for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + with.size()))
        text.replace(at, needle.size(), with);
}

// What base64 hides: the encoded credentials of a basic provider, as git
// and curl put them on the wire (the placeholder's and the secret's).
std::string_view encoded_placeholder(const Provider& p)
{
    return p.type == "basic" && p.placeholder.size() > 6 ? std::string_view(p.placeholder).substr(6)
                                                         : std::string_view();
}

std::string_view encoded_secret(const Provider& p)
{
    return p.type == "basic" && p.header_value.size() > 6 ? std::string_view(p.header_value).substr(6)
                                                          : std::string_view();
}

constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

} // namespace

std::string base64_encode(std::string_view bytes)
{
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                          (static_cast<unsigned char>(bytes[i + 1]) << 8) | static_cast<unsigned char>(bytes[i + 2]);
        for (int shift : {18, 12, 6, 0})
            out += base64_alphabet[(v >> shift) & 63];
    }
    if (std::size_t left = bytes.size() - i; left > 0) {
        std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
        if (left == 2)
            v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out += base64_alphabet[(v >> 18) & 63];
        out += base64_alphabet[(v >> 12) & 63];
        out += left == 2 ? base64_alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

Result<std::string> base64_decode(std::string_view text)
{
    if (text.size() % 4 != 0)
        return fail("base64: length is not a multiple of 4");
    std::string out;
    std::uint32_t v = 0;
    int bits = 0;
    std::size_t padding = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '=') {
            // Only at the end, at most two.
            if (i + 2 < text.size() || ++padding > 2)
                return fail("base64: misplaced padding");
            continue;
        }
        if (padding > 0)
            return fail("base64: data after padding");
        std::size_t at = base64_alphabet.find(c);
        if (at == std::string_view::npos)
            return fail("base64: invalid character");
        v = (v << 6) | static_cast<std::uint32_t>(at);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((v >> bits) & 0xff);
        }
    }
    return out;
}

Result<Provider> parse_provider(std::string_view yaml_text, std::string_view source_name)
{
    try {
        return ProviderParser(source_name).parse(yaml_text);
    } catch (const std::exception& e) {
        return fail(std::string(source_name) + ": cannot parse provider: " + e.what());
    }
}

Result<Provider> load_provider_file(const std::string& path)
{
    auto text = read_small_file(path, max_provider_bytes, "provider file");
    if (!text)
        return std::unexpected(text.error());
    return parse_provider(*text, path);
}

Result<void> resolve_secret(Provider& provider)
{
    std::string where = provider.origin + ": provider '" + provider.name + "': source " + provider.source;
    std::string secret;
    if (provider.source.starts_with("env:")) {
        const char* value = std::getenv(provider.source.c_str() + 4);
        if (value == nullptr || *value == '\0')
            return fail(where + ": the variable is not set in pinfold's environment");
        secret = value;
    } else {
        auto text = read_small_file(provider.source.substr(5), max_secret_bytes, "secret file");
        if (!text)
            return fail(where + ": " + text.error().message);
        secret = std::move(*text);
        if (secret.ends_with('\n'))
            secret.pop_back();
        if (secret.ends_with('\r'))
            secret.pop_back();
    }
    if (secret.empty())
        return fail(where + ": the secret is empty");
    if (secret.size() < min_secret_chars)
        return fail(where + ": the secret is " + std::to_string(secret.size()) + " character(s) long; at least " +
                    std::to_string(min_secret_chars) +
                    " are needed (a shorter value matches ordinary text, e.g. 'x' is in TERM=xterm, and would "
                    "be refused wherever it appears)");
    if (!is_field_value(secret))
        return fail(where + ": the secret contains a control character (not valid in a header)");
    if (secret.find(provider.token) != std::string::npos || provider.token.find(secret) != std::string::npos)
        return fail(where + ": the secret and the placeholder token overlap");
    std::string value = provider.value_template;
    std::size_t open = value.find("{{");
    std::size_t close = value.find("}}", open);
    value.replace(open, close + 2 - open, secret);
    if (provider.type == "basic")
        value = "Basic " + base64_encode(provider.username + ":" + value);
    provider.secret = std::move(secret);
    provider.header_value = std::move(value);
    return {};
}

CredentialSet::CredentialSet(std::vector<Provider> providers) : providers_(std::move(providers)) {}

const Provider* CredentialSet::find(std::string_view name) const
{
    for (const Provider& p : providers_)
        if (p.name == name)
            return &p;
    return nullptr;
}

std::size_t CredentialSet::longest_needle() const
{
    std::size_t longest = 0;
    for (const Provider& p : providers_)
        longest = std::max({longest, p.token.size(), p.secret.size(), encoded_placeholder(p).size(),
                            encoded_secret(p).size()});
    return longest;
}

const Provider* CredentialSet::mentioned_in(std::string_view text, bool* secret_seen) const
{
    auto has = [text](std::string_view needle) { return !needle.empty() && text.find(needle) != std::string_view::npos; };
    for (const Provider& p : providers_) {
        bool secret = has(p.secret) || has(encoded_secret(p));
        if (secret || has(p.token) || has(encoded_placeholder(p))) {
            if (secret_seen)
                *secret_seen = secret;
            return &p;
        }
    }
    return nullptr;
}

std::optional<std::string> CredentialSet::decode_basic(std::string_view value)
{
    // RFC 7235: the scheme is case-insensitive, then one or more spaces.
    if (value.size() < 6)
        return std::nullopt;
    std::string scheme(value.substr(0, 5));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (scheme != "basic" || value[5] != ' ')
        return std::nullopt;
    std::string_view rest = value.substr(6);
    while (rest.starts_with(' '))
        rest.remove_prefix(1);
    while (rest.ends_with(' ') || rest.ends_with('\t'))
        rest.remove_suffix(1);
    auto decoded = base64_decode(rest);
    if (!decoded)
        return std::nullopt;
    return std::move(*decoded);
}

void CredentialSet::redact(std::string& text) const
{
    for (const Provider& p : providers_) {
        std::string mark = "[redacted:" + p.name + "]";
        replace_all(text, p.header_value, mark);
        replace_all(text, encoded_secret(p), mark);
        replace_all(text, encoded_placeholder(p), mark);
        replace_all(text, p.secret, mark);
        if (!p.token.empty())
            replace_all(text, p.token, mark);
    }
}

std::string CredentialSet::serialize() const
{
    std::string out;
    for (const Provider& p : providers_)
        for (std::string_view field : {std::string_view(p.name), std::string_view(p.type),
                                       std::string_view(p.username), std::string_view(p.header),
                                       std::string_view(p.placeholder), std::string_view(p.token),
                                       std::string_view(p.secret), std::string_view(p.header_value),
                                       std::string_view(p.service_host)})
            append_field(out, field);
    return out;
}

Result<CredentialSet> CredentialSet::parse(std::string_view text)
{
    std::vector<Provider> providers;
    while (!text.empty()) {
        Provider p;
        for (std::string* field :
             {&p.name, &p.type, &p.username, &p.header, &p.placeholder, &p.token, &p.secret, &p.header_value,
              &p.service_host}) {
            auto value = take_field(text);
            if (!value)
                return std::unexpected(value.error());
            *field = std::move(*value);
        }
        if (p.name.empty() || p.header.empty() || (p.token.empty() && p.service_host.empty()) || p.secret.empty() ||
            (p.type != "header" && p.type != "basic") || (p.type == "basic") == p.username.empty())
            return fail("credential set: provider with an empty or invalid field");
        providers.push_back(std::move(p));
    }
    return CredentialSet(std::move(providers));
}

const Provider* LeakScanner::feed(std::string_view bytes, bool* secret_seen)
{
    std::size_t keep = set_->longest_needle();
    if (keep == 0)
        return nullptr;
    // Only the tail plus the new bytes: a needle split across feeds is
    // whole in here, and nothing is scanned twice beyond keep-1 bytes.
    std::string window = tail_;
    window.append(bytes);
    const Provider* hit = set_->mentioned_in(window, secret_seen);
    std::size_t tail = std::min(window.size(), keep - 1);
    tail_.assign(window, window.size() - tail, tail);
    return hit;
}

} // namespace pinfold::policy
