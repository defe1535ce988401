#include "validators.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "eplb/core/error.hpp"

namespace eplb::app {
namespace {

std::string show_size(uint64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (unit < 4 && bytes % 1024 == 0 && bytes >= 1024) {
    bytes /= 1024;
    ++unit;
  }
  return fmt::format("{}{}", bytes, kUnits[unit]);
}

CLI::Validator named(CLI::Validator v, const char* name) {
  v.name(name);  // the config file checks a value's type by it (job_config.cpp)
  return v;
}

}  // namespace

CLI::Validator seconds_between(double min_s, double max_s) {
  return named(CLI::Validator(
                   [=](std::string& text) -> std::string {
                     errno = 0;
                     char* end = nullptr;
                     const double value = std::strtod(text.c_str(), &end);
                     if (text.empty() || end == text.c_str() || *end != '\0' || errno != 0 ||
                         !std::isfinite(value) || value < min_s || value > max_s) {
                       return fmt::format("'{}' is not a number of seconds from {} to {}", text,
                                          min_s, max_s);
                     }
                     return "";
                   },
                   fmt::format("SECONDS in [{}, {}]", min_s, max_s)),
               "seconds");
}

std::optional<uint64_t> parse_size(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 15) return std::nullopt;
  const uint64_t number = std::stoull(text.substr(0, digits));
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  uint64_t scale = 0;
  if (unit.empty() || unit == "b") scale = 1;
  const char* prefixes = "kmgt";
  for (int i = 0; i < 4; ++i) {
    const std::string p(1, prefixes[i]);
    const uint64_t binary = uint64_t{1} << (10 * (i + 1));
    uint64_t decimal = 1;
    for (int k = 0; k <= i; ++k) decimal *= 1000;
    if (unit == p || unit == p + "ib") scale = binary;
    if (unit == p + "b") scale = decimal;
  }
  if (scale == 0 || number > UINT64_MAX / scale) return std::nullopt;
  return number * scale;
}

CLI::Validator size_between(uint64_t min_bytes, uint64_t max_bytes) {
  return named(CLI::Validator(
                   [=](std::string& text) -> std::string {
                     const auto bytes = parse_size(text);
                     if (!bytes || *bytes < min_bytes || *bytes > max_bytes) {
                       return fmt::format("'{}' is not a size from {} to {} (e.g. 512MiB, 2GiB)",
                                          text, show_size(min_bytes), show_size(max_bytes));
                     }
                     text = std::to_string(*bytes);
                     return "";
                   },
                   fmt::format("SIZE in [{}, {}]", show_size(min_bytes), show_size(max_bytes))),
               "size");
}

CLI::Validator int_between(int64_t min, int64_t max) {
  return named(CLI::Validator(
                   [=](std::string& text) -> std::string {
                     errno = 0;
                     char* end = nullptr;
                     const long long value = std::strtoll(text.c_str(), &end, 10);
                     if (text.empty() || *end != '\0' || errno != 0 || value < min || value > max) {
                       return max == INT32_MAX
                                  ? fmt::format("'{}' is not an integer >= {}", text, min)
                                  : fmt::format("'{}' is not an integer from {} to {}", text, min,
                                                max);
                     }
                     return "";
                   },
                   ""),
               "integer");
}

CLI::Validator one_of(std::vector<std::string> names) {
  return CLI::Validator(
      [names](std::string& text) -> std::string {
        if (std::find(names.begin(), names.end(), text) != names.end()) return "";
        std::string list;
        for (size_t i = 0; i < names.size(); ++i) {
          list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
        }
        return fmt::format("'{}' is not one of {}", text, list);
      },
      "");
}

namespace {
constexpr const char* kFile = "existing file";
constexpr const char* kDir = "existing directory";
constexpr const char* kFileOrJson = "file or inline JSON";
constexpr const char* kPath = "existing path";

CLI::Validator later(const char* name) {
  // Nothing at parse time: a missing path is an input error, found by check_input_paths.
  CLI::Validator v([](std::string&) { return std::string(); }, "");
  v.name(name);
  return v;
}

bool has_validator(CLI::Option* option, const char* name) {
  try {
    option->get_validator(name);
    return true;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

void check_paths(CLI::App& app, core::ProblemList& problems) {
  namespace fs = std::filesystem;
  for (CLI::Option* option : app.get_options()) {
    if (option->count() == 0) continue;
    const bool want_dir = has_validator(option, kDir);
    const bool json_ok = has_validator(option, kFileOrJson);
    const bool any = has_validator(option, kPath);
    if (!want_dir && !json_ok && !any && !has_validator(option, kFile)) continue;
    const std::string name =
        option->get_lnames().empty() ? option->get_name() : "--" + option->get_lnames().front();
    for (const std::string& value : option->results()) {
      const size_t first = value.find_first_not_of(" \t\r\n");
      if (json_ok && first != std::string::npos && (value[first] == '{' || value[first] == '[')) {
        continue;
      }
      std::error_code ec;
      const auto status = fs::status(value, ec);
      // Only what the option is: a file's own problems (a FIFO, a directory) are its
      // reader's to name.
      if (!fs::exists(status)) {
        problems.add(fmt::format("{}: '{}' does not exist", name, value));
      } else if (want_dir && !fs::is_directory(status)) {
        problems.add(fmt::format("{}: '{}' is not a directory", name, value));
      }
    }
  }
  for (CLI::App* sub : app.get_subcommands()) check_paths(*sub, problems);
}
}  // namespace

CLI::Validator existing_file() { return later(kFile); }
CLI::Validator existing_dir() { return later(kDir); }
CLI::Validator file_or_inline_json() { return later(kFileOrJson); }
CLI::Validator existing_path() { return later(kPath); }

CLI::Validator output_dir() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        std::error_code ec;
        if (std::filesystem::is_directory(text, ec)) return "";
        return fmt::format("'{}' is not an existing directory", text);
      },
      "DIR");
}

void check_input_paths(CLI::App& command) {
  core::ProblemList problems(core::ErrorKind::kInput);
  check_paths(command, problems);
  problems.throw_if_any();
}

}  // namespace eplb::app
