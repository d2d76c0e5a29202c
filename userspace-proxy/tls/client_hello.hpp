#pragma once
// The first flight of a TLS client, read without OpenSSL: pure and
// incremental (bytes in, a verdict out, no sockets), so the proxy can decide
// pass-through, interception or denial before any TLS state exists, and so
// every byte split of a hello can be unit tested.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pinfold::tls {

// A ClientHello larger than this is refused. Real ones are < 2 KiB even
// with post-quantum key shares; the bound keeps a dripping client cheap.
inline constexpr std::size_t max_client_hello_bytes = 32 * 1024;

inline constexpr std::uint16_t ext_server_name = 0;
inline constexpr std::uint16_t ext_alpn = 16;
inline constexpr std::uint16_t ext_encrypted_client_hello = 0xfe0d;
inline constexpr std::uint16_t ext_encrypted_server_name = 0xffce;   // ESNI drafts

struct ClientHello {
    std::optional<std::string> server_name;   // SNI host_name as sent (lowercased)
    std::vector<std::string> alpn;            // protocols offered, in order
    bool encrypted_client_hello = false;      // ECH or ESNI extension present
    std::uint16_t legacy_version = 0;
};

enum class HelloStatus { need_more, complete, malformed };

// Is this the first byte of a TLS handshake record? (Anything else on a
// steered connection is treated as plain HTTP or refused.)
[[nodiscard]] constexpr bool starts_like_tls(unsigned char first) { return first == 0x16; }

class ClientHelloParser {
public:
    // Feeds the next bytes the client sent (only the new ones). After
    // complete or malformed, further calls return the same status.
    HelloStatus feed(std::string_view bytes);

    [[nodiscard]] HelloStatus status() const { return status_; }
    [[nodiscard]] const ClientHello& hello() const { return hello_; }
    [[nodiscard]] const std::string& error() const { return error_; }

private:
    HelloStatus fail(std::string why);
    HelloStatus parse_body();

    HelloStatus status_ = HelloStatus::need_more;
    std::string record_;      // the current TLS record, header included, until complete
    std::string handshake_;   // handshake bytes reassembled across records
    ClientHello hello_;
    std::string error_;
    std::size_t seen_ = 0;
};

// Convenience for tests and one-shot callers.
[[nodiscard]] HelloStatus parse_client_hello(std::string_view bytes, ClientHello& out, std::string* error = nullptr);

} // namespace pinfold::tls
