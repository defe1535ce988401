#include "eplb/core/units.hpp"

#include <fmt/format.h>

#include <cmath>
#include <iterator>

namespace eplb::core {

std::string format_bytes(double bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (!(bytes > 0)) return "0 B";  // also NaN
  size_t unit = 0;
  while (bytes >= 1024.0 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024.0;
    ++unit;
  }
  if (unit == 0 && bytes < 1) return fmt::format("{:.3g} B", bytes);
  if (unit == 0 && bytes == std::floor(bytes)) return fmt::format("{:.0f} B", bytes);
  // Three significant digits; 1023.6 KiB reads "1024 KiB", not a rounded "1.00 MiB".
  const int decimals = bytes < 10 ? 2 : bytes < 100 ? 1 : 0;
  return fmt::format("{:.{}f} {}", bytes, decimals, kUnits[unit]);
}

std::string format_rate(double bytes_per_second) { return format_bytes(bytes_per_second) + "/s"; }

}  // namespace eplb::core
