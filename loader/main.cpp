// pinfold: parses the command line and hands over. See loader/run_command.
#include <iostream>
#include <variant>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "options.hpp"
#include "run_command.hpp"

int main(int argc, char** argv)
{
    using namespace pinfold::loader;
    try {
        auto logger = spdlog::stderr_color_mt("pinfold");
        logger->set_pattern("pinfold: [%l] %v");
        spdlog::set_default_logger(logger);
        auto command = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
        if (!command) {
            std::cerr << "pinfold: " << command.error().what() << "\n";
            return 2;
        }
        if (auto* help = std::get_if<HelpRequest>(&*command)) {
            std::cout << help->text;
            return 0;
        }
        if (auto* check = std::get_if<CheckOptions>(&*command))
            return check_policies(*check);
        auto& run = std::get<RunOptions>(*command);
        spdlog::set_level(spdlog::level::from_str(run.log_level));
        return run_sandbox(run);
    } catch (const std::exception& e) {
        std::cerr << "pinfold: " << e.what() << "\n";
        return 125;
    }
}
