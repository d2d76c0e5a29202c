#include "tls/certificate_authority.hpp"

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

namespace pinfold::tls {

std::string openssl_error(const std::string& what)
{
    std::string out = what;
    bool first = true;
    while (unsigned long code = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        out += first ? ": " : "; ";
        out += buf;
        first = false;
    }
    return out;
}

namespace {

Result<PkeyPtr> new_key()
{
    PkeyPtr key(EVP_EC_gen("P-256"));
    if (!key)
        return fail(openssl_error("generate P-256 key"));
    return key;
}

bool set_random_serial(X509* cert)
{
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return false;
    bytes[0] &= 0x7f;   // positive, as RFC 5280 requires
    BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
    if (!bn)
        return false;
    bool ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
    BN_free(bn);
    return ok;
}

// `value` in openssl.cnf syntax, with issuer/subject set for the key ids.
bool add_extension(X509* cert, X509* issuer, int nid, const char* value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

bool set_validity(X509* cert, std::chrono::system_clock::time_point not_after)
{
    auto now = std::chrono::system_clock::now();
    long back = -3600;   // an hour of clock skew between proxy and client
    long ahead = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(not_after - now).count());
    return X509_gmtime_adj(X509_getm_notBefore(cert), back) && X509_gmtime_adj(X509_getm_notAfter(cert), ahead);
}

bool is_ip_literal(const std::string& name)
{
    unsigned char buf[16];
    return ::inet_pton(AF_INET, name.c_str(), buf) == 1 || ::inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

} // namespace

Result<CertificateAuthority> CertificateAuthority::create(std::chrono::hours lifetime)
{
    CertificateAuthority ca;
    auto key = new_key();
    if (!key)
        return std::unexpected(key.error());
    auto leaf_key = new_key();
    if (!leaf_key)
        return std::unexpected(leaf_key.error());
    ca.key_ = std::move(*key);
    ca.leaf_key_ = std::move(*leaf_key);
    ca.not_after_ = std::chrono::system_clock::now() + lifetime;

    X509Ptr cert(X509_new());
    if (!cert || X509_set_version(cert.get(), 2) != 1 || !set_random_serial(cert.get()) ||
        !set_validity(cert.get(), ca.not_after_) || X509_set_pubkey(cert.get(), ca.key_.get()) != 1)
        return fail(openssl_error("build CA certificate"));
    // A random suffix: two runs' CAs never share a name, so a client that
    // caches issuers by name cannot confuse them.
    unsigned char id[6];
    RAND_bytes(id, sizeof id);
    char cn[64];
    std::snprintf(cn, sizeof cn, "pinfold run CA %02x%02x%02x%02x%02x%02x", id[0], id[1], id[2], id[3], id[4], id[5]);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("pinfold"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    // pathlen:0 - the key can sign leaves, never another CA.
    if (!add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash") ||
        !add_extension(cert.get(), cert.get(), NID_authority_key_identifier, "keyid:always"))
        return fail(openssl_error("CA certificate extensions"));
    if (X509_sign(cert.get(), ca.key_.get(), EVP_sha256()) == 0)
        return fail(openssl_error("sign CA certificate"));

    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1)
        return fail(openssl_error("encode CA certificate"));
    char* data = nullptr;
    long size = BIO_get_mem_data(bio.get(), &data);
    ca.certificate_pem_.assign(data, static_cast<std::size_t>(size));
    ca.certificate_ = std::move(cert);
    return ca;
}

Result<X509Ptr> CertificateAuthority::mint_leaf(const std::string& host) const
{
    X509Ptr cert(X509_new());
    if (!cert || X509_set_version(cert.get(), 2) != 1 || !set_random_serial(cert.get()) ||
        !set_validity(cert.get(), not_after_) || X509_set_pubkey(cert.get(), leaf_key_.get()) != 1)
        return fail(openssl_error("build leaf certificate for " + host));
    X509_NAME* name = X509_get_subject_name(cert.get());
    // CN is at most 64 bytes (RFC 5280 ub-common-name); the SAN is what
    // clients check, so a long name simply has no CN.
    if (host.size() <= 64)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(host.c_str()), -1,
                                   -1, 0);
    X509_set_issuer_name(cert.get(), X509_get_subject_name(certificate_.get()));
    std::string san = (is_ip_literal(host) ? "IP:" : "DNS:") + host;
    if (!add_extension(cert.get(), certificate_.get(), NID_basic_constraints, "critical,CA:FALSE") ||
        !add_extension(cert.get(), certificate_.get(), NID_key_usage, "critical,digitalSignature") ||
        !add_extension(cert.get(), certificate_.get(), NID_ext_key_usage, "serverAuth") ||
        !add_extension(cert.get(), certificate_.get(), NID_subject_alt_name, san.c_str()) ||
        !add_extension(cert.get(), certificate_.get(), NID_subject_key_identifier, "hash") ||
        !add_extension(cert.get(), certificate_.get(), NID_authority_key_identifier, "keyid:always"))
        return fail(openssl_error("leaf certificate extensions for " + host));
    if (X509_sign(cert.get(), key_.get(), EVP_sha256()) == 0)
        return fail(openssl_error("sign leaf certificate for " + host));
    return cert;
}

namespace {

// Only http/1.1 is spoken inside an intercepted session. A client that
// offers ALPN without it gets no ALPN at all rather than a protocol the
// proxy cannot police.
int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                  void*)
{
    static const unsigned char http11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
    for (unsigned int i = 0; i < inlen;) {
        unsigned int len = in[i];
        if (i + 1 + len > inlen)
            break;
        if (len == sizeof http11 && std::equal(in + i + 1, in + i + 1 + len, http11)) {
            *out = in + i + 1;
            *outlen = static_cast<unsigned char>(len);
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

} // namespace

Result<SSL_CTX*> LeafContexts::context_for(const std::string& name)
{
    if (auto it = contexts_.find(name); it != contexts_.end())
        return it->second.get();
    auto leaf = ca_.mint_leaf(name);
    if (!leaf)
        return std::unexpected(leaf.error());
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate(ctx.get(), leaf->get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), ca_.leaf_key()) != 1 ||
        SSL_CTX_add1_chain_cert(ctx.get(), ca_.certificate()) != 1)
        return fail(openssl_error("server context for " + name));
    SSL_CTX_set_alpn_select_cb(ctx.get(), select_http11, nullptr);
    // No session tickets: a resumed session would skip the hello checks'
    // certificate and tie a ticket key to memory we never rotate.
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    if (contexts_.size() >= max_entries_)
        contexts_.erase(contexts_.begin());   // live SSLs hold their own reference
    SSL_CTX* raw = ctx.get();
    contexts_.emplace(name, std::move(ctx));
    return raw;
}

Result<SslCtxPtr> make_upstream_context(const std::string& trusted_pem)
{
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1)
        return fail(openssl_error("upstream TLS context"));
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (trusted_pem.empty()) {
        if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1)
            return fail(openssl_error("system trust store"));
    } else {
        BioPtr bio(BIO_new_mem_buf(trusted_pem.data(), static_cast<int>(trusted_pem.size())));
        X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
        int added = 0;
        while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
            if (X509_STORE_add_cert(store, cert) == 1)
                ++added;
            X509_free(cert);
        }
        ERR_clear_error();   // the read loop ends on a "no start line" error
        if (added == 0)
            return fail("upstream CA: no PEM certificate found");
    }
    static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx.get(), http11, sizeof http11);
    return ctx;
}

} // namespace pinfold::tls
