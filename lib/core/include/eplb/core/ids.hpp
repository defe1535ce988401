// The marker of an empty slot in a placement's physical-to-logical map.
#pragma once

#include <cstdint>

namespace eplb::core {

// Logical expert ids are in [0, num_logical_experts); this marks a slot that holds none.
inline constexpr int32_t kEmptySlot = -1;

}  // namespace eplb::core
