#pragma once
// The per-run certificate authority: a fresh key made by the proxy at start,
// held in the proxy's memory only (never written to a file), and the leaf
// certificates it mints for the names the sandbox connects to.

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

#include "pinfold/error.hpp"
#include "tls/openssl_handles.hpp"

namespace pinfold::tls {

class CertificateAuthority {
public:
    // A new P-256 key and a self-signed CA certificate, valid from an hour
    // ago (clock skew) for `lifetime`.
    [[nodiscard]] static Result<CertificateAuthority> create(std::chrono::hours lifetime = std::chrono::hours(24 * 30));

    // The CA certificate, PEM: the only part that ever leaves the proxy.
    [[nodiscard]] const std::string& certificate_pem() const { return certificate_pem_; }
    [[nodiscard]] X509* certificate() const { return certificate_.get(); }

    // A leaf for `name` (a DNS name, or an IP literal which goes into an
    // iPAddress SAN), signed by this CA with the run's leaf key.
    [[nodiscard]] Result<X509Ptr> mint_leaf(const std::string& name) const;
    [[nodiscard]] EVP_PKEY* leaf_key() const { return leaf_key_.get(); }

private:
    CertificateAuthority() = default;
    PkeyPtr key_;
    PkeyPtr leaf_key_;   // one key for every leaf of the run: minting stays cheap
    X509Ptr certificate_;
    std::string certificate_pem_;
    std::chrono::system_clock::time_point not_after_;
};

// Server-side TLS contexts, one per name, minted on first use and cached:
// what the proxy presents to the sandbox when it intercepts. ALPN offers
// http/1.1 only.
class LeafContexts {
public:
    explicit LeafContexts(const CertificateAuthority& ca, std::size_t max_entries = 4096)
        : ca_(ca), max_entries_(max_entries) {}
    // Borrowed; valid as long as this object.
    [[nodiscard]] Result<SSL_CTX*> context_for(const std::string& name);
    [[nodiscard]] std::size_t size() const { return contexts_.size(); }

private:
    const CertificateAuthority& ca_;
    std::size_t max_entries_;
    std::map<std::string, SslCtxPtr> contexts_;
};

// The client-side context for upstream connections: verifies the chain
// against `trusted_pem` (PEM certificates; empty = the system default
// paths) and, per connection, the host name or IP (see TlsStream::connect).
[[nodiscard]] Result<SslCtxPtr> make_upstream_context(const std::string& trusted_pem);

} // namespace pinfold::tls
