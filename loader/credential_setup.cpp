#include "credential_setup.hpp"

#include <algorithm>

namespace pinfold::loader {

Result<LoadedCredentials> load_credentials(const std::vector<std::string>& provider_files,
                                           const policy::Policy& policy)
{
    std::vector<policy::Provider> providers;
    for (const std::string& file : provider_files) {
        auto provider = policy::load_provider_file(file);
        if (!provider)
            return fail("--provider: " + provider.error().message);
        for (const policy::Provider& other : providers)
            if (other.name == provider->name)
                return fail("--provider " + file + ": provider '" + provider->name + "' is also defined by " +
                            other.origin);
        if (auto r = policy::resolve_secret(*provider); !r)
            return fail("--provider: " + r.error().message);
        providers.push_back(std::move(*provider));
    }
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const policy::Rule& rule = policy.rules[i];
        for (std::size_t j = 0; j < rule.credentials.size(); ++j) {
            const std::string& name = rule.credentials[j];
            if (std::none_of(providers.begin(), providers.end(),
                             [&](const policy::Provider& p) { return p.name == name; }))
                return fail(policy.source + ":" + std::to_string(rule.line) + ": field 'rules[" + std::to_string(i) +
                            "].credentials[" + std::to_string(j) + "]': no provider '" + name +
                            "' is loaded (give its file with --provider)");
        }
    }
    LoadedCredentials out;
    for (const policy::Provider& p : providers) {
        if (p.sandbox_env.empty())
            continue;
        for (const std::string& entry : out.sandbox_env)
            if (entry.starts_with(p.sandbox_env + "="))
                return fail("--provider " + p.origin + ": sandbox_env " + p.sandbox_env +
                            " is set by another provider too");
        out.sandbox_env.push_back(p.sandbox_env + "=" + p.token);
    }
    out.set = policy::CredentialSet(std::move(providers));
    return out;
}

Result<void> check_sandbox_environment(const policy::CredentialSet& set, const std::vector<std::string>& env)
{
    for (const std::string& entry : env) {
        bool secret = false;
        const policy::Provider* p = set.mentioned_in(entry, &secret);
        if (p != nullptr && secret)
            return fail("the sandbox environment would carry the secret of provider '" + p->name + "' in " +
                        entry.substr(0, entry.find('=')) + " (drop it from --env)");
    }
    return {};
}

} // namespace pinfold::loader
