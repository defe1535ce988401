// One unit system, chosen per figure: no non-zero figure reads 0.
#include <catch2/catch.hpp>
#include <cmath>

#include "eplb/core/units.hpp"

namespace eplb::core {

TEST_CASE("figures read in IEC units with three significant digits", "[core][units]") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(-5) == "0 B");
  CHECK(format_bytes(std::nan("")) == "0 B");
  CHECK(format_bytes(1) == "1 B");
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1024) == "1.00 KiB");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(44.0 * 1024 * 1024) == "44.0 MiB");
  CHECK(format_bytes(638.0 * 1024 * 1024 * 1024) == "638 GiB");
  CHECK(format_bytes(3.5 * 1024 * 1024 * 1024 * 1024) == "3.50 TiB");
  CHECK(format_bytes(2.0 * 1024 * 1024 * 1024 * 1024 * 1024 * 1024) == "2048 PiB");
  CHECK(format_rate(850.0 * 1024 * 1024) == "850 MiB/s");
  // The small figures that used to read 0.000 GiB.
  CHECK(format_bytes(4096) == "4.00 KiB");
  CHECK(format_rate(0.25) == "0.25 B/s");
  CHECK(format_rate(0.001) == "0.001 B/s");
  CHECK(format_bytes(10.5) == "10.5 B");
}

}  // namespace eplb::core
