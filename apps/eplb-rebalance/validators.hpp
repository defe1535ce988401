// Validators for the options: each refuses a bad value with its valid range stated plainly
// ("--timeout: 'abc' is not a number of seconds from 0.1 to 604800"), in our words, and
// describes itself in --help without CLI11's own notation (no "INT:POSITIVE", no
// "{auto->0,...}"). Input paths are checked after the parse (check_input_paths), so that a
// missing one is an input error (exit 2) like any other problem with the input.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace eplb::app {

// Seconds as a finite decimal number in [min_s, max_s].
CLI::Validator seconds_between(double min_s, double max_s);

// A byte size ("512MiB", "2GiB", "1048576") in [min_bytes, max_bytes]; replaces the text
// by the byte count. KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024, KB/MB/GB/TB of 1000.
CLI::Validator size_between(uint64_t min_bytes, uint64_t max_bytes);

// The byte count of `text` as size_between reads it, or nullopt.
std::optional<uint64_t> parse_size(const std::string& text);

// A decimal integer in [min, max] ("N >= 1" in --help when max is INT32_MAX).
CLI::Validator int_between(int64_t min, int64_t max);

// One of `names` (case-sensitive): "'x' is not one of a, b or c".
CLI::Validator one_of(std::vector<std::string> names);

// Input paths, checked by check_input_paths after the parse: an existing regular file (or
// any readable non-directory), an existing directory, or a file path or inline JSON ('{' or
// '[' first) as the placement options take.
CLI::Validator existing_file();
CLI::Validator existing_dir();
CLI::Validator file_or_inline_json();
CLI::Validator existing_path();  // a file or a directory

// Where output goes, checked at parse time: an existing directory, else a usage error (64),
// as every "cannot create output" is: "--output-dir: 'x' is not an existing directory".
CLI::Validator output_dir();

// Local, after the parse: every option of `command` and its parsed subcommands checked with
// one of the path validators above whose path does not exist (or is not a directory where
// one is wanted). Throws core::Error(kInput), one problem each:
// "--hf: 'models/x' does not exist".
void check_input_paths(CLI::App& command);

}  // namespace eplb::app
