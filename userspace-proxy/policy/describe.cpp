#include "policy/policy.hpp"

namespace pinfold::policy {

std::string describe(const Policy& policy)
{
    std::string out = "policy '" + policy.name + "'";
    if (!policy.source.empty())
        out += " from " + policy.source;
    out += '\n';
    if (!policy.description.empty()) {
        // Indent continuation lines so a multi-line description stays a block.
        out += "  ";
        for (char c : policy.description) {
            out += c;
            if (c == '\n')
                out += "  ";
        }
        if (!policy.description.ends_with('\n'))
            out += '\n';
    }
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& rule = policy.rules[i];
        std::string methods;
        for (const std::string& method : rule.methods)
            methods += (methods.empty() ? "" : ",") + method;
        if (methods.empty())
            methods = "ANY";
        out += "  " + std::to_string(i + 1) + ". " + rule.name + ": " +
               (rule.action == Action::allow ? "allow " : "deny ") + methods + " " +
               rule.endpoint.text;
        if (!rule.binaries.empty()) {
            out += " [binaries:";
            for (const std::string& binary : rule.binaries)
                out += " " + binary;
            out += "]";
        }
        out += '\n';
    }
    out += "  otherwise: deny\n";
    for (const std::string& warning : policy.warnings)
        out += "warning: " + warning + '\n';
    return out;
}

} // namespace pinfold::policy
