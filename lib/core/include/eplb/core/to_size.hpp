// Signed ids, ranks, rows and counts as container indexes and sizes.
//
// Placements and plans use int32_t (as the file formats do), so code that indexes a vector
// with them converts. to_size() says where, and checks the one thing the conversion needs.
#pragma once

#include <concepts>
#include <cstddef>
#include <string>

#include "eplb/core/error.hpp"

namespace eplb::core {

// `value` as size_t. Local. Throws core::Error(kInternal) when it is negative: callers pass
// values that are non-negative by construction (validated input, loop counters), so a
// negative one is a broken invariant, never bad input.
template <std::signed_integral T>
constexpr size_t to_size(T value) {
  if (value < 0) {
    throw Error(ErrorKind::kInternal,
                "internal error: negative index or size " + std::to_string(value));
  }
  return static_cast<size_t>(value);
}

}  // namespace eplb::core
