// Validators for numeric options: each refuses a bad value with its valid range stated
// plainly ("--timeout: 'abc' is not a number of seconds from 0.1 to 604800").
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace eplb::app {

// Seconds as a finite decimal number in [min_s, max_s].
CLI::Validator seconds_between(double min_s, double max_s);

// A byte size ("512MiB", "2GiB", "1048576") in [min_bytes, max_bytes]; replaces the text
// by the byte count. KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024, KB/MB/GB/TB of 1000.
CLI::Validator size_between(uint64_t min_bytes, uint64_t max_bytes);

// The byte count of `text` as size_between reads it, or nullopt.
std::optional<uint64_t> parse_size(const std::string& text);

}  // namespace eplb::app
