// to_size: non-negative values convert unchanged; a negative one is an internal error.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>

#include "eplb/core/error.hpp"
#include "eplb/core/to_size.hpp"

namespace core = eplb::core;

TEST_CASE("to_size: non-negative values convert unchanged") {
  CHECK(core::to_size(int32_t{0}) == 0);
  CHECK(core::to_size(int32_t{7}) == 7);
  CHECK(core::to_size(std::numeric_limits<int32_t>::max()) == 2147483647u);
  CHECK(core::to_size(std::numeric_limits<int64_t>::max()) == 9223372036854775807u);
  static_assert(core::to_size(3) == 3);
}

TEST_CASE("to_size: a negative value is an internal error naming it") {
  try {
    (void)core::to_size(int32_t{-1});
    FAIL("no exception");
  } catch (const core::Error& e) {
    CHECK(e.kind() == core::ErrorKind::kInternal);
    CHECK(std::string(e.what()).find("-1") != std::string::npos);
  }
}
