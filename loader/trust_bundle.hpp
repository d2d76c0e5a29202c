#pragma once
// Trust injection: the CA bundle a sandbox uses so that its clients accept
// the proxy's per-run CA without flags. The bundle is the system roots plus
// the run CA's certificate (public PEM; the key never leaves the proxy's
// memory). The environment variables below point the common clients at it;
// the sandbox may in addition mount the bundle over the distribution's path.

#include <string>
#include <string_view>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// The distribution's bundle (Debian's ca-certificates).
inline constexpr std::string_view system_ca_bundle = "/etc/ssl/certs/ca-certificates.crt";

struct TrustBundle {
    std::string directory;     // per run, 0755, removed at the end of the run
    std::string bundle_path;   // directory/ca-bundle.pem: system roots + run CA
    std::string ca_path;       // directory/run-ca.pem: the run CA alone

    // NAME=VALUE entries for CMD's environment: SSL_CERT_FILE (OpenSSL,
    // Python ssl, Go, Ruby), CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE (requests,
    // which otherwise uses certifi), NODE_EXTRA_CA_CERTS (node adds it to
    // its built-in roots), GIT_SSL_CAINFO. The paths are as the sandbox
    // sees them: the host paths unless the sandbox mounts them elsewhere.
    [[nodiscard]] std::vector<std::string> environment() const;
    [[nodiscard]] std::vector<std::string> environment(std::string_view bundle_in_sandbox,
                                                       std::string_view ca_in_sandbox) const;
};

// Where the bundle of run `run_name` lives (nothing is created yet), so the
// sandbox plan can name it before the proxy has made the CA.
[[nodiscard]] TrustBundle plan_trust_bundle(const std::string& run_name,
                                            const std::string& parent = "/run/pinfold-trust");

// Writes the bundle: `system_bundle` (roots, may be absent: then the run CA
// alone) followed by `ca_pem`. World-readable: it holds only certificates.
// Bundles of runs whose lock in `lock_dir` is no longer held are removed.
[[nodiscard]] Result<void> write_trust_bundle(const TrustBundle& bundle, const std::string& ca_pem,
                                              std::string_view system_bundle = system_ca_bundle,
                                              const std::string& lock_dir = "/run/pinfold");

// The two halves of write_trust_bundle, for a sandbox that is set up while
// the proxy makes the CA: the directory, the bundle with the system roots
// and an empty CA file (a sandbox binds them), then the run CA, written
// into the same files.
[[nodiscard]] Result<void> create_trust_bundle_files(const TrustBundle& bundle,
                                                     const std::string& lock_dir = "/run/pinfold",
                                                     std::string_view system_bundle = system_ca_bundle);
[[nodiscard]] Result<void> fill_trust_bundle(const TrustBundle& bundle, const std::string& ca_pem);

// Removes the bundle's directory (best effort; called at the end of a run).
void remove_trust_bundle(const TrustBundle& bundle) noexcept;

// Owns a written bundle: removes it when the run ends.
class WrittenTrustBundle {
public:
    explicit WrittenTrustBundle(TrustBundle bundle) : bundle_(std::move(bundle)) {}
    WrittenTrustBundle(const WrittenTrustBundle&) = delete;
    WrittenTrustBundle& operator=(const WrittenTrustBundle&) = delete;
    ~WrittenTrustBundle() { remove_trust_bundle(bundle_); }

private:
    TrustBundle bundle_;
};

} // namespace pinfold::loader
