#include "credential_setup.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <spdlog/spdlog.h>

namespace pinfold::loader {

namespace {

// The NAME of each --service NAME=...; the rest is checked by add_services.
std::vector<std::string> service_names(const std::vector<std::string>& specs)
{
    std::vector<std::string> names;
    for (const std::string& spec : specs)
        names.push_back(spec.substr(0, spec.find('=')));
    return names;
}

bool same_file(const std::string& a, const std::string& b)
{
    struct stat sa {}, sb {};
    return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

} // namespace

Result<LoadedCredentials> load_credentials(const std::vector<std::string>& provider_files,
                                           const std::vector<std::string>& services, const policy::Policy& policy)
{
    // 1. Every file parsed before any secret is read: the profile's
    //    providers (paths relative to the policy), then --provider.
    std::vector<policy::Provider> providers;
    std::vector<std::string> listed_at;   // per provider: where it was named, for errors
    for (std::size_t i = 0; i < policy.providers.size(); ++i) {
        const policy::ProviderFileRef& ref = policy.providers[i];
        std::string where = policy.source + ":" + std::to_string(ref.line) + ":" + std::to_string(ref.column) +
                            ": field 'providers[" + std::to_string(i) + "]': ";
        auto provider = policy::load_provider_file(ref.resolved);
        if (!provider)
            return fail(where + provider.error().message);
        for (const policy::Provider& other : providers)
            if (other.name == provider->name)
                return fail(where + "provider '" + provider->name + "' is also defined by " + other.origin);
        providers.push_back(std::move(*provider));
        listed_at.push_back(where);
    }
    const std::size_t from_policy = providers.size();
    std::vector<bool> replaced(from_policy, false);
    for (const std::string& file : provider_files) {
        auto provider = policy::load_provider_file(file);
        if (!provider)
            return fail("--provider: " + provider.error().message);
        auto same = std::find_if(providers.begin(), providers.end(),
                                 [&](const policy::Provider& p) { return p.name == provider->name; });
        if (same != providers.end()) {
            auto index = static_cast<std::size_t>(same - providers.begin());
            if (index >= from_policy || replaced[index])
                return fail("--provider " + file + ": provider '" + provider->name + "' is also defined by " +
                            same->origin);
            // --provider replaces the profile's provider of the same name
            // (another secret source, say); the same file is just named twice.
            if (!same_file(same->origin, file))
                spdlog::info("--provider {} replaces provider '{}' of {}", file, provider->name, same->origin);
            *same = std::move(*provider);
            replaced[index] = true;
            listed_at[index] = "--provider: ";
            continue;
        }
        providers.push_back(std::move(*provider));
        listed_at.push_back("--provider: ");
    }
    // 2. Every binding checked: names loaded, no secret in cleartext.
    if (auto r = policy::check_credential_bindings(policy, providers, service_names(services)); !r)
        return std::unexpected(r.error());
    // 3. The secrets, once.
    for (std::size_t i = 0; i < providers.size(); ++i)
        if (auto r = policy::resolve_secret(providers[i]); !r)
            return fail(listed_at[i] + r.error().message);
    LoadedCredentials out;
    for (const policy::Provider& p : providers) {
        if (p.sandbox_env.empty())
            continue;
        std::string entry = p.sandbox_env + "=" + p.token;
        // Providers sharing a token (a header and a basic one for the same
        // account) may name the same variable; different values may not.
        bool duplicate = false;
        for (const std::string& other : out.sandbox_env) {
            if (!other.starts_with(p.sandbox_env + "="))
                continue;
            if (other != entry)
                return fail("provider file " + p.origin + ": sandbox_env " + p.sandbox_env +
                            " is set by another provider to another token");
            duplicate = true;
        }
        if (!duplicate)
            out.sandbox_env.push_back(std::move(entry));
    }
    out.set = policy::CredentialSet(std::move(providers));
    // 4. Last, as it writes the token files.
    if (auto r = add_services(services, out); !r)
        return std::unexpected(r.error());
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

namespace pinfold::loader {

std::string check_credentials(const policy::Policy& policy, bool& failed)
{
    // Parsed only: pinfold check never reads a secret.
    std::vector<policy::Provider> providers;
    std::string errors;
    for (std::size_t i = 0; i < policy.providers.size(); ++i) {
        const policy::ProviderFileRef& ref = policy.providers[i];
        auto provider = policy::load_provider_file(ref.resolved);
        if (!provider) {
            errors += "error: " + policy.source + ":" + std::to_string(ref.line) + ":" + std::to_string(ref.column) +
                      ": field 'providers[" + std::to_string(i) + "]': " + provider.error().message + "\n";
            failed = true;
            continue;
        }
        providers.push_back(std::move(*provider));
    }
    std::size_t problems = 0;
    return errors + policy::describe_credentials(policy, providers, problems);
}

} // namespace pinfold::loader
