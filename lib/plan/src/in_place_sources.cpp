// Journaled rows versus rows rolled forward from a stable slot
// (eplb/plan/in_place_sources.hpp).
#include "eplb/plan/in_place_sources.hpp"

#include <unordered_map>

#include "eplb/core/error.hpp"

namespace eplb::plan {

namespace {

using Slots = std::span<const int32_t>;

int32_t at(Slots v, int32_t slot) { return v[static_cast<size_t>(slot)]; }

// Unchanged rows, and changed rows whose new logical expert stays in a stable slot
// (kFromSource: on the row's own EP rank if one is, else the lowest). Every other row is
// journaled.
std::vector<InPlaceRow> from_stable_slots(Slots old_slots, Slots new_slots,
                                          int32_t num_slots_per_rank) {
  const auto num_slots = static_cast<int32_t>(new_slots.size());
  const auto stable = [&](int32_t slot) {
    return at(new_slots, slot) >= 0 && at(old_slots, slot) == at(new_slots, slot);
  };
  // Logical expert id -> its stable slots, ascending.
  std::unordered_map<int32_t, std::vector<int32_t>> holders;
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    if (stable(slot)) holders[at(new_slots, slot)].push_back(slot);
  }
  std::vector<InPlaceRow> rows(new_slots.size());
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    InPlaceRow& row = rows[static_cast<size_t>(slot)];
    if (stable(slot)) {
      row.how = RowRecovery::kUnchanged;
      continue;
    }
    const auto it = holders.find(at(new_slots, slot));
    if (at(new_slots, slot) < 0 || it == holders.end()) continue;  // journaled
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

// The journaled rows of the first pass that hold a logical expert, and which of them must
// stay journaled: each must be journaled or find its new logical expert in the old bytes of
// a journaled row (a dominating set; greedy: the row whose old bytes the most rows still
// need, lowest slot first on ties). Journaled from the start: rows that become empty.
struct Journaled {
  std::vector<int32_t> open_rows;
  std::vector<char> journaled;  // per slot
};

Journaled choose_journaled(const std::vector<InPlaceRow>& rows, Slots old_slots, Slots new_slots) {
  const auto num_slots = static_cast<int32_t>(new_slots.size());
  Journaled j;
  j.journaled.assign(rows.size(), 0);
  std::vector<char> covered(rows.size(), 0);
  std::unordered_map<int32_t, int32_t> needing;  // logical expert -> rows not covered
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    if (rows[static_cast<size_t>(slot)].how != RowRecovery::kJournaled) continue;
    j.journaled[static_cast<size_t>(slot)] = at(new_slots, slot) < 0 ? 1 : 0;
    if (at(new_slots, slot) >= 0) j.open_rows.push_back(slot);
  }
  const auto cover = [&](int32_t source) {  // rows needing `source`'s old logical expert
    for (const int32_t d : j.open_rows) {
      if (covered[static_cast<size_t>(d)] == 0 && at(new_slots, d) == at(old_slots, source) &&
          d != source) {
        covered[static_cast<size_t>(d)] = 1;
        --needing[at(new_slots, d)];
      }
    }
  };
  for (const int32_t d : j.open_rows) ++needing[at(new_slots, d)];
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    if (j.journaled[static_cast<size_t>(slot)] != 0 && at(old_slots, slot) >= 0) cover(slot);
  }
  while (true) {
    int32_t best = -1, best_gain = 0;
    for (const int32_t s : j.open_rows) {
      if (j.journaled[static_cast<size_t>(s)] != 0) continue;
      const auto it = needing.find(at(old_slots, s));
      int32_t gain = it == needing.end() ? 0 : it->second;
      if (covered[static_cast<size_t>(s)] == 0) {
        ++gain;  // itself (needing counts rows of other old experts only: s changes)
      }
      if (gain > best_gain) {
        best = s;
        best_gain = gain;
      }
    }
    if (best < 0) break;  // every row journaled or covered
    j.journaled[static_cast<size_t>(best)] = 1;
    if (covered[static_cast<size_t>(best)] == 0) {
      covered[static_cast<size_t>(best)] = 1;
      --needing[at(new_slots, best)];
    }
    if (at(old_slots, best) >= 0) cover(best);
  }
  return j;
}

// Sources: a journaled old holder, on the row's own EP rank first, else the lowest. Then a
// journaled row that is nobody's source but finds its expert in another journaled row's
// old bytes copies from it instead (that row is a source from then on).
void assign_journaled_sources(std::vector<InPlaceRow>& rows, Journaled& j, Slots old_slots,
                              Slots new_slots, int32_t num_slots_per_rank) {
  const auto num_slots = static_cast<int32_t>(new_slots.size());
  std::vector<char> is_source(rows.size(), 0);
  const auto source_of = [&](int32_t d) {
    int32_t source = -1;
    for (int32_t s = 0; s < num_slots; ++s) {
      if (s == d || j.journaled[static_cast<size_t>(s)] == 0 ||
          at(old_slots, s) != at(new_slots, d)) {
        continue;
      }
      if (source < 0) source = s;
      if (s / num_slots_per_rank == d / num_slots_per_rank) return s;
    }
    return source;
  };
  for (const int32_t d : j.open_rows) {
    if (j.journaled[static_cast<size_t>(d)] != 0) continue;
    const int32_t source = source_of(d);
    EPLB_ASSERT(source >= 0);
    rows[static_cast<size_t>(d)] = {RowRecovery::kFromJournaled, source};
    is_source[static_cast<size_t>(source)] = 1;
  }
  for (const int32_t d : j.open_rows) {
    if (j.journaled[static_cast<size_t>(d)] == 0 || is_source[static_cast<size_t>(d)] != 0) {
      continue;
    }
    const int32_t source = source_of(d);
    if (source < 0) continue;
    j.journaled[static_cast<size_t>(d)] = 0;
    rows[static_cast<size_t>(d)] = {RowRecovery::kFromJournaled, source};
    is_source[static_cast<size_t>(source)] = 1;
  }
}

}  // namespace

std::vector<InPlaceRow> classify_in_place_layer(std::span<const int32_t> old_slots,
                                                std::span<const int32_t> new_slots,
                                                int32_t num_slots_per_rank, bool two_waves) {
  EPLB_ASSERT(num_slots_per_rank > 0 && old_slots.size() == new_slots.size());
  EPLB_ASSERT(old_slots.size() % static_cast<size_t>(num_slots_per_rank) == 0);
  std::vector<InPlaceRow> rows = from_stable_slots(old_slots, new_slots, num_slots_per_rank);
  if (!two_waves) return rows;
  // Wave 1 (every copy record) is durable before wave 2 (every journaled row) writes a byte,
  // so a changed row may copy from the old bytes of a journaled one.
  Journaled journaled = choose_journaled(rows, old_slots, new_slots);
  assign_journaled_sources(rows, journaled, old_slots, new_slots, num_slots_per_rank);
  return rows;
}

}  // namespace eplb::plan
