#include "pinfold/units.hpp"

#include <cmath>
#include <cstdlib>

namespace pinfold {

Result<std::uint64_t> parse_size(const std::string& text)
{
    if (text.empty())
        return fail("empty size");
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    std::string unit(end);
    if (end == text.c_str() || !(value > 0) || !std::isfinite(value))
        return fail("'" + text + "' is not a positive size (e.g. 512M, 2G)");
    double scale = 1;
    if (unit.empty() || unit == "B")
        scale = 1;
    else if (unit == "K" || unit == "k" || unit == "KiB")
        scale = 1024.0;
    else if (unit == "M" || unit == "MiB")
        scale = 1024.0 * 1024;
    else if (unit == "G" || unit == "GiB")
        scale = 1024.0 * 1024 * 1024;
    else if (unit == "T" || unit == "TiB")
        scale = 1024.0 * 1024 * 1024 * 1024;
    else
        return fail("'" + text + "': unknown unit '" + unit + "' (use K, M, G or T)");
    double bytes = value * scale;
    if (bytes < 4096 || bytes > 9.0e18)
        return fail("'" + text + "' is out of range");
    return static_cast<std::uint64_t>(bytes);
}

Result<std::chrono::milliseconds> parse_duration(const std::string& text)
{
    if (text.empty())
        return fail("empty duration");
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    std::string unit(end);
    if (end == text.c_str() || !(value > 0) || !std::isfinite(value))
        return fail("'" + text + "' is not a positive duration (e.g. 300, 90s, 5m, 1h)");
    double seconds = 0;
    if (unit.empty() || unit == "s")
        seconds = value;
    else if (unit == "m" || unit == "min")
        seconds = value * 60;
    else if (unit == "h")
        seconds = value * 3600;
    else
        return fail("'" + text + "': unknown unit '" + unit + "' (use s, m or h)");
    if (seconds > 366.0 * 24 * 3600)
        return fail("'" + text + "' is out of range");
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

Result<double> parse_cpus(const std::string& text)
{
    char* end = nullptr;
    double cpus = std::strtod(text.c_str(), &end);
    if (text.empty() || end == text.c_str() || *end != '\0' || !(cpus >= 0.01) || cpus > 4096)
        return fail("'" + text + "' is not a number of CPUs such as 1 or 1.5");
    return cpus;
}

} // namespace pinfold
