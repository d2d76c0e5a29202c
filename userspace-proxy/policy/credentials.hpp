#pragma once
// Credential providers: the sandbox holds a placeholder, the proxy puts the
// real secret into one configured header of requests an allow rule binds to
// the provider (`credentials: [name]`). Everything here is pure apart from
// reading provider files and secret sources (the loader's job), so the
// binding and the redaction are unit-tested.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::policy {

// Below this many characters a secret would match ordinary text (a
// one-letter token is in "xterm"), so it is refused at start.
inline constexpr std::size_t min_secret_chars = 8;

struct Provider {
    std::string name;            // what rules name in `credentials:`
    // "header": the header value is value_template with the secret.
    // "basic": HTTP Basic auth (git over HTTPS): the header is
    // Authorization, its value "Basic base64(username:password)" where the
    // password is value_template with the secret; placeholder and
    // header_value are stored encoded, as they are on the wire.
    std::string type = "header";
    std::string username;        // basic only
    std::string header;          // matched case-insensitively
    std::string value_template;  // "Bearer {{GITHUB_TOKEN}}" (basic: the password's template)
    std::string placeholder;     // "Bearer __GITHUB_TOKEN__": the header value the sandbox sends
    std::string variable;        // "GITHUB_TOKEN": the name inside {{ }}
    std::string token;           // "__GITHUB_TOKEN__": the placeholder's part where the secret goes
    std::string source;          // "env:NAME" or "file:/path" (default env:<variable>)
    std::string sandbox_env;     // variable set to `token` in the sandbox; "" for none
    std::string origin;          // file name, for messages
    // Host-side service (--service NAME=ADDR:PORT): no placeholder; the
    // proxy itself adds the header to every allowed request whose Host is
    // this name, replacing any header of that name the sandbox sent.
    std::string service_host;
    // Filled by resolve_secret / parse_credential_set; never logged.
    std::string secret;
    std::string header_value;    // value_template with the secret in place
};

[[nodiscard]] std::string base64_encode(std::string_view bytes);
// Strict RFC 4648 with padding; nullopt-like empty Result on anything else.
[[nodiscard]] Result<std::string> base64_decode(std::string_view text);

// Parses one provider file (YAML). Errors name FILE:LINE:COL and the field.
[[nodiscard]] Result<Provider> parse_provider(std::string_view yaml_text, std::string_view source_name);
[[nodiscard]] Result<Provider> load_provider_file(const std::string& path);

// Reads the secret from `source` (env: through `getenv`, file: from disk,
// one trailing newline dropped) and fills secret and header_value.
[[nodiscard]] Result<void> resolve_secret(Provider& provider);

// What the proxy holds: every provider with its secret. Passed from the
// loader to the proxy through a sealed memfd, never argv or environment.
class CredentialSet {
public:
    CredentialSet() = default;
    explicit CredentialSet(std::vector<Provider> providers);

    [[nodiscard]] const std::vector<Provider>& providers() const { return providers_; }
    [[nodiscard]] const Provider* find(std::string_view name) const;
    [[nodiscard]] bool empty() const { return providers_.empty(); }

    // Longest placeholder token or secret, for the body scanner's window.
    [[nodiscard]] std::size_t longest_needle() const;
    // The provider whose placeholder token or secret occurs in `text`, or
    // nullptr. `*secret_seen` tells which of the two.
    [[nodiscard]] const Provider* mentioned_in(std::string_view text, bool* secret_seen = nullptr) const;
    // For a header value "Basic <base64>" (scheme case-insensitive): the
    // decoded "user:password", else nullopt. Used to see placeholders and
    // secrets that base64 hides.
    [[nodiscard]] static std::optional<std::string> decode_basic(std::string_view header_value);
    // Replaces every secret, header value and placeholder token in `text`.
    void redact(std::string& text) const;

    [[nodiscard]] std::string serialize() const;
    [[nodiscard]] static Result<CredentialSet> parse(std::string_view text);

private:
    std::vector<Provider> providers_;
};

// Scans a stream for placeholder tokens and secrets across read
// boundaries: keeps the last (longest needle - 1) bytes between feeds.
class LeakScanner {
public:
    explicit LeakScanner(const CredentialSet& set) : set_(&set) {}
    // The provider mentioned by the bytes seen so far, or nullptr.
    [[nodiscard]] const Provider* feed(std::string_view bytes, bool* secret_seen = nullptr);

private:
    const CredentialSet* set_;
    std::string tail_;
};

} // namespace pinfold::policy

#include "policy/policy.hpp"

namespace pinfold::policy {

// Checks every rule's `credentials:` against the providers at hand:
// each name is one of them, and a rule on plaintext http:// reaches only a
// loopback address or a host-side service (`service_names`), since the
// secret would otherwise cross the network in cleartext. Errors name
// POLICY:LINE and the field.
[[nodiscard]] Result<void> check_credential_bindings(const Policy& policy, const std::vector<Provider>& providers,
                                                     const std::vector<std::string>& service_names);

// For `pinfold check`: per rule with credentials, what the proxy may
// inject (provider, type, header, placeholder; never a secret), then the
// problems found, each on a line starting "problem: ". `providers` were
// parsed without their secrets; `problems` counts what was flagged.
[[nodiscard]] std::string describe_credentials(const Policy& policy, const std::vector<Provider>& providers,
                                               std::size_t& problems);

} // namespace pinfold::policy
