#pragma once
// The loader's side of credential providers: reads the provider files and
// their secrets once, at start, checks the policy's bindings, and says what
// the sandbox gets instead (placeholder variables). The secrets go to the
// proxy only, through a sealed memfd.

#include <string>
#include <vector>

#include "pinfold/error.hpp"
#include "policy/credentials.hpp"
#include "policy/policy.hpp"

namespace pinfold::loader {

struct LoadedCredentials {
    policy::CredentialSet set;
    std::vector<std::string> sandbox_env;   // NAME=PLACEHOLDER-TOKEN
    std::vector<std::string> service_hosts; // NAME=ADDR for the proxy's Host check
};

// --service NAME=127.0.0.1:PORT,token-file=PATH (fullsend ADR-0017): a fresh
// per-run bearer token, written 0600 to PATH for the service to check and
// added by the proxy to every allowed request for Host NAME.
[[nodiscard]] Result<void> add_services(const std::vector<std::string>& specs, LoadedCredentials& loaded);

// All or nothing: every provider file (the policy's `providers:`, then
// --provider, which replaces a profile provider of the same name) parsed,
// every rule's binding checked (names loaded; http:// only to loopback or a
// --service), every secret read, then the --service token files written.
[[nodiscard]] Result<LoadedCredentials> load_credentials(const std::vector<std::string>& provider_files,
                                                         const std::vector<std::string>& services,
                                                         const policy::Policy& policy);

// Refuses a sandbox environment that carries a secret (e.g. --env NAME
// passing pinfold's own variable through).
[[nodiscard]] Result<void> check_sandbox_environment(const policy::CredentialSet& set,
                                                     const std::vector<std::string>& env);

// For `pinfold check`: the profile's providers (parsed, never their
// secrets) and what each rule may inject, with the problems flagged.
// `failed` is set when a provider file cannot be used.
[[nodiscard]] std::string check_credentials(const policy::Policy& policy, bool& failed);

} // namespace pinfold::loader
