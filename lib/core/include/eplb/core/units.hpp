// Figures for people: one unit system everywhere (IEC: B, KiB, MiB, GiB, TiB, PiB; rates per
// second), the unit chosen per figure so that it reads with three significant digits and no
// non-zero figure prints as 0 ("512 B", "1.50 KiB", "44.0 MiB", "638 GiB", "850 MiB/s").
// Reports (--json) carry exact byte counts; these are for the lines people read.
//
// Local and pure.
#pragma once

#include <string>

namespace eplb::core {

// `bytes` in the largest unit it reaches at least 1 of. Whole bytes as integers; a fraction
// of a byte (a slow rate) with three significant digits. Negative, NaN: as 0.
std::string format_bytes(double bytes);

// format_bytes(bytes_per_second) + "/s".
std::string format_rate(double bytes_per_second);

}  // namespace eplb::core
