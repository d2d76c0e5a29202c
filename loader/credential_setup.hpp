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

// All or nothing: every file parsed, every secret read, every name a rule
// lists loaded, before anything is used.
[[nodiscard]] Result<LoadedCredentials> load_credentials(const std::vector<std::string>& provider_files,
                                                         const policy::Policy& policy);

// Refuses a sandbox environment that carries a secret (e.g. --env NAME
// passing pinfold's own variable through).
[[nodiscard]] Result<void> check_sandbox_environment(const policy::CredentialSet& set,
                                                     const std::vector<std::string>& env);

} // namespace pinfold::loader
