#include "credential_setup.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

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

Result<void> add_services(const std::vector<std::string>& specs, LoadedCredentials& loaded)
{
    std::vector<policy::Provider> providers = loaded.set.providers();
    for (const std::string& spec : specs) {
        std::string where = "--service '" + spec + "'";
        auto eq = spec.find('=');
        auto comma = spec.find(",token-file=");
        if (eq == std::string::npos || comma == std::string::npos || comma < eq)
            return fail(where + ": expected NAME=127.0.0.1:PORT,token-file=PATH");
        std::string name = spec.substr(0, eq);
        std::string address = spec.substr(eq + 1, comma - eq - 1);
        std::string token_file = spec.substr(comma + 12);
        bool name_ok = !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        });
        if (!name_ok)
            return fail(where + ": NAME must be 1 to 63 of [a-z0-9-]");
        auto colon = address.rfind(':');
        std::string ip = colon == std::string::npos ? "" : address.substr(0, colon);
        std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
        if (ip != "127.0.0.1" || port.empty() || port.size() > 5 ||
            !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
            std::stoul(port) == 0 || std::stoul(port) > 65535)
            return fail(where + ": the address must be 127.0.0.1:PORT (a host-local service)");
        if (!token_file.starts_with('/'))
            return fail(where + ": token-file must be an absolute path");
        for (const policy::Provider& p : providers)
            if (p.name == "service-" + name)
                return fail(where + ": service '" + name + "' is given twice");
        unsigned char random[32];
        if (::getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random))
            return fail_errno(where + ": getrandom");
        std::string token;
        for (unsigned char b : random) {
            char hex[3];
            std::snprintf(hex, sizeof hex, "%02x", b);
            token += hex;
        }
        int fd = ::open(token_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return fail_errno(where + ": cannot write the token file");
        bool written = ::fchmod(fd, 0600) == 0 && ::write(fd, token.data(), token.size()) ==
                                                      static_cast<ssize_t>(token.size());
        ::close(fd);
        if (!written)
            return fail_errno(where + ": cannot write the token file");
        policy::Provider p;
        p.name = "service-" + name;
        p.header = "Authorization";
        p.secret = token;
        p.header_value = "Bearer " + token;
        p.service_host = name;
        p.origin = "--service";
        providers.push_back(std::move(p));
        loaded.service_hosts.push_back(name + "=" + ip);
    }
    loaded.set = policy::CredentialSet(std::move(providers));
    return {};
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
