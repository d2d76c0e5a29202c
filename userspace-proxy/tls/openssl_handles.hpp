#pragma once
// Owning handles for the OpenSSL objects pinfold keeps, and the one place
// that turns OpenSSL's error queue into a message.

#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace pinfold::tls {

struct SslCtxFree { void operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); } };
struct SslFree { void operator()(SSL* p) const noexcept { SSL_free(p); } };
struct X509Free { void operator()(X509* p) const noexcept { X509_free(p); } };
struct PkeyFree { void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); } };
struct BioFree { void operator()(BIO* p) const noexcept { BIO_free_all(p); } };

using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Drains the thread's OpenSSL error queue into "what: reason; reason".
[[nodiscard]] std::string openssl_error(const std::string& what);

} // namespace pinfold::tls
