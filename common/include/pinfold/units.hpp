#pragma once
// Sizes and durations as people write them in flags and policies.

#include <chrono>
#include <cstdint>
#include <string>

#include "pinfold/error.hpp"

namespace pinfold {

// "512M", "2G", "1.5G", "1048576" (bytes; K/M/G/T are powers of 1024).
[[nodiscard]] Result<std::uint64_t> parse_size(const std::string& text);
// "300" (seconds), "300s", "5m", "1h", "1.5m".
[[nodiscard]] Result<std::chrono::milliseconds> parse_duration(const std::string& text);
// "1", "1.5", "0.25": CPUs' worth of time per wall-clock second.
[[nodiscard]] Result<double> parse_cpus(const std::string& text);

} // namespace pinfold
