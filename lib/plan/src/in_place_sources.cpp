// Journaled rows versus rows rolled forward from a stable slot
// (eplb/plan/in_place_sources.hpp).
#include "eplb/plan/in_place_sources.hpp"

#include <unordered_map>

#include "eplb/core/error.hpp"

namespace eplb::plan {

std::vector<InPlaceRow> classify_in_place_layer(std::span<const int32_t> old_slots,
                                                std::span<const int32_t> new_slots,
                                                int32_t num_slots_per_rank) {
  EPLB_ASSERT(num_slots_per_rank > 0 && old_slots.size() == new_slots.size());
  EPLB_ASSERT(old_slots.size() % static_cast<size_t>(num_slots_per_rank) == 0);
  const auto num_slots = static_cast<int32_t>(new_slots.size());
  const auto stable = [&](int32_t slot) {
    const auto s = static_cast<size_t>(slot);
    return new_slots[s] >= 0 && old_slots[s] == new_slots[s];
  };
  // Logical expert id -> its stable slots, ascending.
  std::unordered_map<int32_t, std::vector<int32_t>> holders;
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    if (stable(slot)) holders[new_slots[static_cast<size_t>(slot)]].push_back(slot);
  }
  std::vector<InPlaceRow> rows(new_slots.size());
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    InPlaceRow& row = rows[static_cast<size_t>(slot)];
    if (stable(slot)) {
      row.how = RowRecovery::kUnchanged;
      continue;
    }
    const auto it = holders.find(new_slots[static_cast<size_t>(slot)]);
    if (new_slots[static_cast<size_t>(slot)] < 0 || it == holders.end()) continue;  // journaled
    const int32_t rank = slot / num_slots_per_rank;
    row.how = RowRecovery::kFromSource;
    row.source_slot = it->second.front();
    for (const int32_t s : it->second) {
      if (s / num_slots_per_rank == rank) {
        row.source_slot = s;
        break;
      }
    }
  }
  return rows;
}

}  // namespace eplb::plan
