#include "options.hpp"

#include <algorithm>
#include <sstream>

#include <boost/program_options.hpp>

namespace pinfold::loader {

namespace po = boost::program_options;

namespace {

constexpr const char* usage_text =
    "usage: pinfold run --policy FILE [--audit FILE] [--host NAME=ADDR]... -- CMD [ARGS...]\n"
    "       pinfold check FILE...\n"
    "       pinfold help\n";

po::options_description run_description(RunOptions& o)
{
    po::options_description desc("pinfold run options");
    desc.add_options()
        ("policy,p", po::value(&o.policy_path)->required(), "policy YAML file")
        ("audit", po::value(&o.audit_path), "append audit JSON lines to FILE (default: stderr)")
        ("host", po::value(&o.hosts)->composing(),
         "NAME=ADDR[,ADDR]: addresses of NAME for the proxy's Host check (like /etc/hosts)")
        ("log-level", po::value(&o.log_level), "trace|debug|info|warn|error (default warn)")
        ("proxy", po::value(&o.proxy_path), "path of pinfold-proxy (default: beside pinfold)");
    return desc;
}

Result<Command> parse_run(std::vector<std::string> args)
{
    RunOptions o;
    auto dashdash = std::find(args.begin(), args.end(), "--");
    if (dashdash == args.end())
        return fail("pinfold run: missing '--' before the command to run");
    o.command.assign(dashdash + 1, args.end());
    args.erase(dashdash, args.end());
    if (o.command.empty())
        return fail("pinfold run: no command after '--'");
    auto desc = run_description(o);
    try {
        po::variables_map vm;
        po::store(po::command_line_parser(args).options(desc).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        return fail(std::string("pinfold run: ") + e.what());
    }
    static const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "off"};
    if (std::find(levels.begin(), levels.end(), o.log_level) == levels.end())
        return fail("pinfold run: --log-level '" + o.log_level + "' is not one of trace|debug|info|warn|error|off");
    for (const auto& host : o.hosts) {
        auto eq = host.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == host.size())
            return fail("pinfold run: --host '" + host + "': expected NAME=ADDR[,ADDR]");
    }
    return o;
}

} // namespace

Result<Command> parse_command_line(const std::vector<std::string>& args)
{
    if (args.empty())
        return fail(std::string("no subcommand\n") + usage_text);
    const std::string& sub = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (sub == "help" || sub == "--help" || sub == "-h") {
        RunOptions scratch;
        std::ostringstream text;
        text << usage_text << "\n" << run_description(scratch);
        return HelpRequest{text.str()};
    }
    if (sub == "run")
        return parse_run(std::move(rest));
    if (sub == "check") {
        if (rest.empty())
            return fail("pinfold check: no policy file given");
        for (const auto& arg : rest) {
            if (arg.starts_with("-"))
                return fail("pinfold check: unknown option '" + arg + "'");
        }
        return CheckOptions{rest};
    }
    return fail("unknown subcommand '" + sub + "'\n" + usage_text);
}

} // namespace pinfold::loader
