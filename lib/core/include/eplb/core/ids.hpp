// Small strong id types for the places where an int could mean several things.
#pragma once

#include <cstdint>
#include <functional>

namespace eplb::core {

template <typename Tag>
struct StrongId {
  int32_t value = -1;
  constexpr StrongId() = default;
  constexpr explicit StrongId(int32_t v) : value(v) {}
  constexpr int32_t get() const { return value; }
  friend constexpr auto operator<=>(StrongId, StrongId) = default;
};

// Logical expert id in [0, num_logical_experts); -1 marks an empty slot.
using ExpertId = StrongId<struct ExpertIdTag>;
// EP rank: a shard of the checkpoint (not necessarily an MPI process).
using EpRank = StrongId<struct EpRankTag>;

inline constexpr int32_t kEmptySlot = -1;

}  // namespace eplb::core

template <typename Tag>
struct std::hash<eplb::core::StrongId<Tag>> {
  size_t operator()(eplb::core::StrongId<Tag> id) const noexcept {
    return std::hash<int32_t>{}(id.value);
  }
};
