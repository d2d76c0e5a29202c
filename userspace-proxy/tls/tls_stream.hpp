#pragma once
// One TLS session driven entirely through memory buffers: ciphertext in
// and out as strings, plaintext in and out as strings. It never touches a
// socket, so the proxy's event loop stays non-blocking and the same byte
// shuffling serves plain and TLS transports.

#include <memory>
#include <string>
#include <string_view>

#include "pinfold/error.hpp"
#include "tls/openssl_handles.hpp"

namespace pinfold::tls {

class TlsStream {
public:
    // Server side (toward the sandbox) with a context from LeafContexts.
    [[nodiscard]] static Result<std::unique_ptr<TlsStream>> accept(SSL_CTX* ctx);
    // Client side (toward the real server): sends SNI `peer` unless it is an
    // IP literal, and verifies the certificate against `peer` (host name or
    // IP address) besides the chain.
    [[nodiscard]] static Result<std::unique_ptr<TlsStream>> connect(SSL_CTX* ctx, const std::string& peer);

    // Ciphertext received from the peer.
    void feed(std::string_view ciphertext);

    // Advances the handshake, decrypts what was fed into `plain_in`,
    // encrypts (and consumes) `plain_out` once the handshake is done, and
    // appends what must be sent to `cipher_out`. An error is fatal for the
    // session; its message says why (verification failures name the reason).
    [[nodiscard]] Result<void> pump(std::string& plain_in, std::string& plain_out, std::string& cipher_out);

    // Queues close_notify into `cipher_out` (once).
    void close(std::string& cipher_out);

    [[nodiscard]] bool established() const { return established_; }
    [[nodiscard]] bool peer_closed() const { return peer_closed_; }
    [[nodiscard]] bool verification_failed() const { return verification_failed_; }

private:
    TlsStream() = default;
    void drain(std::string& cipher_out);
    [[nodiscard]] Result<void> fatal(int ssl_error, const char* what);

    SslPtr ssl_;
    BIO* in_ = nullptr;    // owned by ssl_
    BIO* out_ = nullptr;   // owned by ssl_
    bool established_ = false;
    bool peer_closed_ = false;
    bool closed_ = false;
    bool verification_failed_ = false;
};

} // namespace pinfold::tls
