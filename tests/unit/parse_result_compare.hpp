// Comparing two results of an HTTP head parse (parse_request_head,
// parse_response_head, parse_response_framing): the incremental-parse tests
// ask whether a kept HeadScan answers exactly what a fresh parse does.
#pragma once

namespace pinfold::test {

// Both refusals with the same status and reason, both incomplete, or both
// complete heads for which same_value(first, second) holds.
template <class Parse, class SameValue>
bool same_parse(const Parse& a, const Parse& b, SameValue same_value)
{
    if (a.has_value() != b.has_value())
        return false;
    if (!a)
        return a.error().status == b.error().status && a.error().reason == b.error().reason;
    if (a->has_value() != b->has_value())
        return false;
    return !a->has_value() || same_value(**a, **b);
}

} // namespace pinfold::test
