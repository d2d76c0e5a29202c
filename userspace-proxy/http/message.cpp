#include "http/message.hpp"

#include "http/syntax.hpp"

namespace pinfold::http {

namespace {

const Header* find_header(const std::vector<Header>& headers, std::string_view name) noexcept
{
    for (const auto& header : headers)
        if (syntax::iequals(header.name, name))
            return &header;
    return nullptr;
}

} // namespace

const Header* RequestHead::find(std::string_view name) const noexcept { return find_header(headers, name); }

const Header* ResponseHead::find(std::string_view name) const noexcept { return find_header(headers, name); }

} // namespace pinfold::http
