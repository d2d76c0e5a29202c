#include "tls/client_hello.hpp"

#include <algorithm>

namespace pinfold::tls {

namespace {

constexpr unsigned char record_handshake = 0x16;
constexpr unsigned char handshake_client_hello = 0x01;
constexpr std::size_t record_header = 5;
constexpr std::size_t max_record_payload = 16384 + 256;   // RFC 8446 5.1 + slack for 1.2 compression

// A bounds-checked cursor: every read says whether the bytes were there.
class Reader {
public:
    explicit Reader(std::string_view data) : data_(data) {}
    bool u8(std::uint8_t& v)
    {
        if (data_.size() < 1)
            return false;
        v = static_cast<std::uint8_t>(data_[0]);
        data_.remove_prefix(1);
        return true;
    }
    bool u16(std::uint16_t& v)
    {
        if (data_.size() < 2)
            return false;
        v = static_cast<std::uint16_t>((static_cast<std::uint8_t>(data_[0]) << 8) | static_cast<std::uint8_t>(data_[1]));
        data_.remove_prefix(2);
        return true;
    }
    bool bytes(std::size_t n, std::string_view& out)
    {
        if (data_.size() < n)
            return false;
        out = data_.substr(0, n);
        data_.remove_prefix(n);
        return true;
    }
    bool vec8(std::string_view& out)
    {
        std::uint8_t n = 0;
        return u8(n) && bytes(n, out);
    }
    bool vec16(std::string_view& out)
    {
        std::uint16_t n = 0;
        return u16(n) && bytes(n, out);
    }
    [[nodiscard]] bool empty() const { return data_.empty(); }

private:
    std::string_view data_;
};

// A host_name must be printable ASCII without spaces (RFC 6066 says "DNS
// hostname"); anything else is a malformed hello, not a name to look up.
bool plausible_host_name(std::string_view name)
{
    if (name.empty() || name.size() > 255)
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

} // namespace

HelloStatus ClientHelloParser::fail(std::string why)
{
    error_ = std::move(why);
    status_ = HelloStatus::malformed;
    return status_;
}

HelloStatus ClientHelloParser::feed(std::string_view bytes)
{
    while (status_ == HelloStatus::need_more && !bytes.empty()) {
        // Complete the record header, then the record, one piece at a time.
        std::size_t want = record_header;
        if (record_.size() >= record_header) {
            std::size_t length = (static_cast<std::uint8_t>(record_[3]) << 8) | static_cast<std::uint8_t>(record_[4]);
            want = record_header + length;
        }
        std::size_t take = std::min(want - record_.size(), bytes.size());
        record_.append(bytes.substr(0, take));
        bytes.remove_prefix(take);
        seen_ += take;
        if (seen_ > max_client_hello_bytes + record_header * 8)
            return fail("ClientHello larger than " + std::to_string(max_client_hello_bytes) + " bytes");
        if (record_.size() == record_header) {
            if (static_cast<unsigned char>(record_[0]) != record_handshake)
                return fail("not a TLS handshake record");
            if (record_[1] != 0x03)
                return fail("unknown TLS record version");
            std::size_t length = (static_cast<std::uint8_t>(record_[3]) << 8) | static_cast<std::uint8_t>(record_[4]);
            if (length == 0 || length > max_record_payload)
                return fail("TLS record length " + std::to_string(length) + " out of range");
            continue;
        }
        if (record_.size() < record_header)
            continue;
        std::size_t length = (static_cast<std::uint8_t>(record_[3]) << 8) | static_cast<std::uint8_t>(record_[4]);
        if (record_.size() < record_header + length)
            continue;
        handshake_.append(record_, record_header, length);
        record_.clear();
        if (handshake_.size() >= 4) {
            if (static_cast<unsigned char>(handshake_[0]) != handshake_client_hello)
                return fail("first handshake message is not a ClientHello");
            std::size_t body = (static_cast<std::size_t>(static_cast<std::uint8_t>(handshake_[1])) << 16) |
                               (static_cast<std::size_t>(static_cast<std::uint8_t>(handshake_[2])) << 8) |
                               static_cast<std::uint8_t>(handshake_[3]);
            if (body > max_client_hello_bytes)
                return fail("ClientHello larger than " + std::to_string(max_client_hello_bytes) + " bytes");
            // Bytes after the hello in the same record belong to a later
            // message; the hello itself is all that is read here.
            if (handshake_.size() >= 4 + body) {
                handshake_.resize(4 + body);
                return parse_body();
            }
        }
    }
    return status_;
}

HelloStatus ClientHelloParser::parse_body()
{
    Reader r(std::string_view(handshake_).substr(4));
    std::string_view random, session, suites, compression;
    if (!r.u16(hello_.legacy_version) || !r.bytes(32, random) || !r.vec8(session) || !r.vec16(suites) ||
        !r.vec8(compression))
        return fail("ClientHello truncated before its extensions");
    if (session.size() > 32)
        return fail("ClientHello session id longer than 32 bytes");
    if (suites.empty() || suites.size() % 2 != 0)
        return fail("ClientHello cipher suite list is empty or odd");
    if (compression.empty())
        return fail("ClientHello offers no compression method");
    if (r.empty()) {
        status_ = HelloStatus::complete;   // SSLv3-style hello: no extensions at all
        return status_;
    }
    std::string_view extensions;
    if (!r.vec16(extensions) || !r.empty())
        return fail("ClientHello extensions length does not match the message");
    Reader ext(extensions);
    std::vector<std::uint16_t> seen_types;
    while (!ext.empty()) {
        std::uint16_t type = 0;
        std::string_view data;
        if (!ext.u16(type) || !ext.vec16(data))
            return fail("ClientHello extension truncated");
        // RFC 8446 4.2: "There MUST NOT be more than one extension of the
        // same type" - a second SNI could be read differently upstream.
        if (std::find(seen_types.begin(), seen_types.end(), type) != seen_types.end())
            return fail("ClientHello repeats extension " + std::to_string(type));
        seen_types.push_back(type);
        if (type == ext_encrypted_client_hello || type == ext_encrypted_server_name) {
            hello_.encrypted_client_hello = true;
        } else if (type == ext_server_name) {
            Reader sni(data);
            std::string_view list;
            if (!sni.vec16(list) || !sni.empty() || list.empty())
                return fail("server_name extension malformed");
            Reader names(list);
            while (!names.empty()) {
                std::uint8_t name_type = 0;
                std::string_view name;
                if (!names.u8(name_type) || !names.vec16(name))
                    return fail("server_name entry truncated");
                if (name_type != 0)
                    return fail("server_name entry of unknown type " + std::to_string(name_type));
                if (hello_.server_name)
                    return fail("server_name lists more than one host_name");
                if (!plausible_host_name(name))
                    return fail("server_name host_name is empty or not printable ASCII");
                std::string lower(name);
                std::transform(lower.begin(), lower.end(), lower.begin(),
                               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
                hello_.server_name = std::move(lower);
            }
        } else if (type == ext_alpn) {
            Reader alpn(data);
            std::string_view list;
            if (!alpn.vec16(list) || !alpn.empty() || list.empty())
                return fail("ALPN extension malformed");
            Reader protocols(list);
            while (!protocols.empty()) {
                std::string_view protocol;
                if (!protocols.vec8(protocol) || protocol.empty())
                    return fail("ALPN protocol name empty or truncated");
                hello_.alpn.emplace_back(protocol);
            }
        }
    }
    status_ = HelloStatus::complete;
    return status_;
}

HelloStatus parse_client_hello(std::string_view bytes, ClientHello& out, std::string* error)
{
    ClientHelloParser parser;
    HelloStatus status = parser.feed(bytes);
    out = parser.hello();
    if (error)
        *error = parser.error();
    return status;
}

} // namespace pinfold::tls
