#include "body_scan.hpp"

#include <algorithm>

#include "pinfold/hex.hpp"

namespace pinfold::proxy {

std::string_view ChunkedPayload::feed(std::string_view bytes)
{
    // "SIZE[;ext]CRLF DATA CRLF ... 0CRLF trailers CRLF"
    data_.clear();
    std::size_t i = 0;
    while (i < bytes.size()) {
        char c = bytes[i];
        switch (state_) {
        case Framing::size:
            if (int v = pinfold::hex_value(static_cast<unsigned char>(c)); v >= 0) {
                // The decoder refuses sizes this large long before.
                if (remaining_ > (std::uint64_t{1} << 58))
                    return {};
                remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(v);
            } else if (c == '\n') {
                state_ = remaining_ == 0 ? Framing::trailers : Framing::data;
            } else if (c != '\r') {
                state_ = Framing::extension;
            }
            ++i;
            break;
        case Framing::extension:
            if (c == '\n')
                state_ = remaining_ == 0 ? Framing::trailers : Framing::data;
            ++i;
            break;
        case Framing::data: {
            std::size_t take = static_cast<std::size_t>(
                std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(bytes.size() - i)));
            data_.append(bytes.substr(i, take));
            remaining_ -= take;
            i += take;
            if (remaining_ == 0)
                state_ = Framing::data_end;
            break;
        }
        case Framing::data_end:
            if (c == '\n')
                state_ = Framing::size;
            ++i;
            break;
        case Framing::trailers:
            i = bytes.size();
            break;
        }
    }
    return data_;
}

const policy::Provider* RequestBodyScan::feed(std::string_view bytes, bool* secret_seen)
{
    if (const policy::Provider* p = wire_.feed(bytes, secret_seen))
        return p;
    if (!chunked_)
        return nullptr;
    // Trailer fields are seen by the wire view; the payload view sees a
    // placeholder or secret split across chunks whole again.
    std::string_view payload = chunks_.feed(bytes);
    return payload.empty() ? nullptr : payload_.feed(payload, secret_seen);
}

} // namespace pinfold::proxy
