#include "validators.hpp"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

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

}  // namespace

CLI::Validator seconds_between(double min_s, double max_s) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || end == text.c_str() || *end != '\0' || errno != 0 ||
            !std::isfinite(value) || value < min_s || value > max_s) {
          return fmt::format("'{}' is not a number of seconds from {} to {}", text, min_s, max_s);
        }
        return "";
      },
      fmt::format("SECONDS in [{}, {}]", min_s, max_s));
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
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const auto bytes = parse_size(text);
        if (!bytes || *bytes < min_bytes || *bytes > max_bytes) {
          return fmt::format("'{}' is not a size from {} to {} (e.g. 512MiB, 2GiB)", text,
                             show_size(min_bytes), show_size(max_bytes));
        }
        text = std::to_string(*bytes);
        return "";
      },
      fmt::format("SIZE in [{}, {}]", show_size(min_bytes), show_size(max_bytes)));
}

}  // namespace eplb::app
