#include "tls/tls_stream.hpp"

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace pinfold::tls {

namespace {

Result<void> attach_bios(SSL* ssl, BIO*& in, BIO*& out)
{
    in = BIO_new(BIO_s_mem());
    out = BIO_new(BIO_s_mem());
    if (!in || !out) {
        BIO_free(in);
        BIO_free(out);
        return fail(openssl_error("memory BIO"));
    }
    // An empty read BIO means "wait for more", not end of file.
    BIO_set_mem_eof_return(in, -1);
    SSL_set_bio(ssl, in, out);
    return {};
}

} // namespace

Result<std::unique_ptr<TlsStream>> TlsStream::accept(SSL_CTX* ctx)
{
    std::unique_ptr<TlsStream> s(new TlsStream());
    s->ssl_.reset(SSL_new(ctx));
    if (!s->ssl_)
        return fail(openssl_error("SSL_new"));
    if (auto r = attach_bios(s->ssl_.get(), s->in_, s->out_); !r)
        return std::unexpected(r.error());
    SSL_set_accept_state(s->ssl_.get());
    return s;
}

Result<std::unique_ptr<TlsStream>> TlsStream::connect(SSL_CTX* ctx, const std::string& peer)
{
    std::unique_ptr<TlsStream> s(new TlsStream());
    s->ssl_.reset(SSL_new(ctx));
    if (!s->ssl_)
        return fail(openssl_error("SSL_new"));
    unsigned char buf[16];
    bool ip = ::inet_pton(AF_INET, peer.c_str(), buf) == 1 || ::inet_pton(AF_INET6, peer.c_str(), buf) == 1;
    if (ip) {
        // RFC 6066: no IP literals in SNI; the certificate must carry the IP.
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_.get()), peer.c_str()) != 1)
            return fail(openssl_error("verify IP " + peer));
    } else {
        if (SSL_set_tlsext_host_name(s->ssl_.get(), peer.c_str()) != 1 || SSL_set1_host(s->ssl_.get(), peer.c_str()) != 1)
            return fail(openssl_error("SNI/verify name " + peer));
        // A certificate for "*.example.com" must not match "a.b.example.com".
        SSL_set_hostflags(s->ssl_.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (auto r = attach_bios(s->ssl_.get(), s->in_, s->out_); !r)
        return std::unexpected(r.error());
    SSL_set_connect_state(s->ssl_.get());
    return s;
}

void TlsStream::feed(std::string_view ciphertext)
{
    if (!ciphertext.empty())
        BIO_write(in_, ciphertext.data(), static_cast<int>(ciphertext.size()));
}

void TlsStream::drain(std::string& cipher_out)
{
    char* data = nullptr;
    long size = BIO_get_mem_data(out_, &data);
    if (size > 0) {
        cipher_out.append(data, static_cast<std::size_t>(size));
        (void)BIO_reset(out_);
    }
}

Result<void> TlsStream::fatal(int ssl_error, const char* what)
{
    long verify = SSL_get_verify_result(ssl_.get());
    if (verify != X509_V_OK) {
        verification_failed_ = true;
        ERR_clear_error();
        return fail(std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify));
    }
    if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        return fail(std::string(what) + ": unexpected end of TLS stream");
    return fail(openssl_error(what));
}

Result<void> TlsStream::pump(std::string& plain_in, std::string& plain_out, std::string& cipher_out)
{
    if (!established_) {
        ERR_clear_error();
        int rc = SSL_do_handshake(ssl_.get());
        if (rc == 1) {
            established_ = true;
        } else {
            int err = SSL_get_error(ssl_.get(), rc);
            drain(cipher_out);   // alerts too: the peer learns why
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
                return fatal(err, "TLS handshake");
            return {};
        }
    }
    char buf[16 * 1024];
    // Bounded: a read yields at most a record; the fed ciphertext is finite.
    for (int i = 0; i < 4096 && !peer_closed_; ++i) {
        ERR_clear_error();
        int n = SSL_read(ssl_.get(), buf, sizeof buf);
        if (n > 0) {
            plain_in.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        int err = SSL_get_error(ssl_.get(), n);
        if (err == SSL_ERROR_ZERO_RETURN) {
            peer_closed_ = true;
            break;
        }
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        drain(cipher_out);
        return fatal(err, "TLS read");
    }
    if (!plain_out.empty() && !closed_) {
        ERR_clear_error();
        int n = SSL_write(ssl_.get(), plain_out.data(), static_cast<int>(plain_out.size()));
        if (n > 0) {
            plain_out.erase(0, static_cast<std::size_t>(n));
        } else {
            int err = SSL_get_error(ssl_.get(), n);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                drain(cipher_out);
                return fatal(err, "TLS write");
            }
        }
    }
    drain(cipher_out);
    return {};
}

void TlsStream::close(std::string& cipher_out)
{
    if (closed_)
        return;
    closed_ = true;
    if (established_) {
        ERR_clear_error();
        SSL_shutdown(ssl_.get());
        ERR_clear_error();
        drain(cipher_out);
    }
}

} // namespace pinfold::tls
