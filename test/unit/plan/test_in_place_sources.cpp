// classify_in_place_layer (eplb/plan/in_place_sources.hpp): which changed rows of an update
// in place are journaled and which are rolled forward from a stable slot.
#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "eplb/plan/in_place_sources.hpp"

namespace eplb::plan {
namespace {

using Slots = std::vector<int32_t>;
constexpr InPlaceRow kSame{RowRecovery::kUnchanged, -1};
constexpr InPlaceRow kJournal{RowRecovery::kJournaled, -1};
InPlaceRow from(int32_t slot) { return {RowRecovery::kFromSource, slot}; }

std::vector<InPlaceRow> classify(const Slots& old_slots, const Slots& new_slots, int32_t per_rank) {
  return classify_in_place_layer(old_slots, new_slots, per_rank);
}

TEST_CASE("an unchanged layer writes nothing", "[plan][in_place]") {
  CHECK(classify({0, 1, 2, 3}, {0, 1, 2, 3}, 2) ==
        std::vector<InPlaceRow>{kSame, kSame, kSame, kSame});
}

TEST_CASE("a swap without other holders is journaled on both sides", "[plan][in_place]") {
  // Slots 1 (rank 0) and 2 (rank 1) swap logical experts 1 and 2: neither has a stable copy.
  CHECK(classify({0, 1, 2, 3}, {0, 2, 1, 3}, 2) ==
        std::vector<InPlaceRow>{kSame, kJournal, kJournal, kSame});
}

TEST_CASE("a chain and a cycle without stable holders are journaled", "[plan][in_place]") {
  // Chain: slot 0 takes 1 (old at slot 1), slot 1 takes 2, slot 2 takes 9 (from nowhere:
  // a logical expert no old slot holds cannot be in place, but the classification does not
  // care where bytes come from).
  CHECK(classify({0, 1, 2, 3}, {1, 2, 9, 3}, 4) ==
        std::vector<InPlaceRow>{kJournal, kJournal, kJournal, kSame});
  // Cycle of three across three EP ranks.
  CHECK(classify({0, 1, 2}, {1, 2, 0}, 1) == std::vector<InPlaceRow>{kJournal, kJournal, kJournal});
}

TEST_CASE("a changed row whose logical expert keeps a stable slot copies from it",
          "[plan][in_place]") {
  // Logical expert 5 stays in slot 1 (rank 0) and slot 6 (rank 1); slots 2 and 4 take it.
  const Slots old_slots{0, 5, 1, 2, 3, 4, 5, 7};
  const Slots new_slots{0, 5, 5, 2, 5, 4, 5, 7};
  // Slot 2 (rank 0) copies from its own rank's slot 1; slot 4 (rank 1) from slot 6.
  CHECK(classify(old_slots, new_slots, 4) ==
        std::vector<InPlaceRow>{kSame, kSame, from(1), kSame, from(6), kSame, kSame, kSame});
}

TEST_CASE("without a stable holder on its own EP rank, the lowest stable slot is the source",
          "[plan][in_place]") {
  // Logical expert 7 is stable in slots 3 (rank 1) and 5 (rank 2); slot 0 (rank 0) takes it.
  CHECK(classify({1, 2, 4, 7, 8, 7}, {7, 2, 4, 7, 8, 7}, 2) ==
        std::vector<InPlaceRow>{from(3), kSame, kSame, kSame, kSame, kSame});
}

TEST_CASE("a replica that moves is not a stable source", "[plan][in_place]") {
  // Logical expert 3 leaves slot 0 but stays in slot 3: slot 2 copies it from there.
  CHECK(classify({3, 1, 2, 3}, {0, 1, 3, 3}, 2) ==
        std::vector<InPlaceRow>{kJournal, kSame, from(3), kSame});
  // Its only old holder, slot 0, changes: slot 2 is journaled, although an old slot held it.
  CHECK(classify({3, 1, 2, 4}, {0, 1, 3, 4}, 2) ==
        std::vector<InPlaceRow>{kJournal, kSame, kJournal, kSame});
}

TEST_CASE("empty slots: written as zeros, journaled; never a source", "[plan][in_place]") {
  // Slot 1 becomes empty; slot 2 stays empty (rewritten as zeros, as the plan does); slot 3
  // takes -1's place from nothing.
  CHECK(classify({0, 1, -1, 2}, {0, -1, -1, 1}, 2) ==
        std::vector<InPlaceRow>{kSame, kJournal, kJournal, kJournal});
}

TEST_CASE(
    "property: sources are stable holders of the same logical expert, preferred on "
    "the same EP rank; every row with a stable holder uses one",
    "[plan][in_place]") {
  std::mt19937 rng(11);
  for (int round = 0; round < 300; ++round) {
    const int32_t per_rank = 1 + static_cast<int32_t>(rng() % 6);
    const int32_t ranks = 1 + static_cast<int32_t>(rng() % 5);
    const int32_t experts = 1 + static_cast<int32_t>(rng() % 10);
    const int32_t n = per_rank * ranks;
    Slots old_slots(static_cast<size_t>(n)), new_slots(static_cast<size_t>(n));
    const auto draw = [&] {
      return static_cast<int32_t>(rng() % static_cast<uint32_t>(experts + 1)) - 1;
    };
    for (auto& e : old_slots) e = draw();
    for (size_t s = 0; s < new_slots.size(); ++s) {
      new_slots[s] = rng() % 2 == 0 ? old_slots[s] : draw();
    }
    INFO("round " << round);
    const auto rows = classify(old_slots, new_slots, per_rank);
    REQUIRE(rows.size() == new_slots.size());
    const auto stable = [&](int32_t s) {
      return new_slots[static_cast<size_t>(s)] >= 0 &&
             new_slots[static_cast<size_t>(s)] == old_slots[static_cast<size_t>(s)];
    };
    for (int32_t d = 0; d < n; ++d) {
      const InPlaceRow& row = rows[static_cast<size_t>(d)];
      const int32_t e = new_slots[static_cast<size_t>(d)];
      if (stable(d)) {
        CHECK(row == kSame);
        continue;
      }
      bool any = false, own = false;
      for (int32_t s = 0; s < n; ++s) {
        if (!stable(s) || new_slots[static_cast<size_t>(s)] != e) continue;
        any = true;
        own = own || s / per_rank == d / per_rank;
      }
      if (!any) {
        CHECK(row == kJournal);
        continue;
      }
      REQUIRE(row.how == RowRecovery::kFromSource);
      CHECK(stable(row.source_slot));
      CHECK(new_slots[static_cast<size_t>(row.source_slot)] == e);
      CHECK((row.source_slot / per_rank == d / per_rank) == own);
    }
  }
}

// --- two waves: rows copied from the old bytes of a journaled row -----------------------

std::vector<InPlaceRow> waves(const Slots& old_slots, const Slots& new_slots, int32_t per_rank) {
  return classify_in_place_layer(old_slots, new_slots, per_rank, /*two_waves=*/true);
}
InPlaceRow after(int32_t slot) { return {RowRecovery::kFromJournaled, slot}; }

TEST_CASE("two waves: one row of a swap pair is journaled, the other copies its old bytes",
          "[plan][in_place][waves]") {
  CHECK(waves({0, 1, 2, 3}, {0, 2, 1, 3}, 2) ==
        std::vector<InPlaceRow>{kSame, kJournal, after(1), kSame});
}

TEST_CASE("two waves: a cycle of three keeps two journaled, a chain one",
          "[plan][in_place][waves]") {
  // Cycle: slot 0 needs slot 1's old bytes, 1 needs 2's, 2 needs 0's.
  CHECK(waves({0, 1, 2}, {1, 2, 0}, 1) == std::vector<InPlaceRow>{kJournal, kJournal, after(0)});
  // Chain: slot 0 needs 1's old bytes, 1 needs 2's, 2 takes a logical expert kept stable in
  // slot 3 (it copies from there, in wave 1: its old bytes are not there in wave 2, so slot
  // 1 cannot copy them and is journaled).
  CHECK(waves({0, 1, 2, 3}, {1, 2, 3, 3}, 4) ==
        std::vector<InPlaceRow>{after(1), kJournal, from(3), kSame});
}

TEST_CASE("two waves: replicas of one journaled row, an emptied slot as a source",
          "[plan][in_place][waves]") {
  // Logical expert 4 leaves slot 0 (which takes 5) for slots 1 and 3; 5 leaves slot 2 for 0
  // (emptied, so journaled: slot 0 could copy from it, but slot 0's old bytes serve two).
  CHECK(waves({4, 1, 5, 3}, {5, 4, -1, 4}, 2) ==
        std::vector<InPlaceRow>{kJournal, after(0), kJournal, after(0)});
  // Slot 1 becomes empty (journaled zeros); slot 2 takes its old logical expert.
  CHECK(waves({0, 1, 2, 3}, {0, -1, 1, 3}, 2) ==
        std::vector<InPlaceRow>{kSame, kJournal, after(1), kSame});
}

TEST_CASE("two waves: the source is preferred on the row's own EP rank",
          "[plan][in_place][waves]") {
  // Logical expert 7 was in slots 0 (rank 0) and 3 (rank 1), both changing; slot 2 (rank 1)
  // takes it: copies from slot 3, journaled for it.
  const auto rows = waves({7, 1, 2, 7}, {8, 1, 7, 9}, 2);
  CHECK(rows[2] == after(3));
  CHECK(rows[3] == kJournal);
}

TEST_CASE("property: two waves are safe and leave no copy undone", "[plan][in_place][waves]") {
  std::mt19937 rng(17);
  for (int round = 0; round < 500; ++round) {
    const int32_t per_rank = 1 + static_cast<int32_t>(rng() % 6);
    const int32_t ranks = 1 + static_cast<int32_t>(rng() % 5);
    const int32_t experts = 1 + static_cast<int32_t>(rng() % 10);
    const int32_t n = per_rank * ranks;
    Slots old_slots(static_cast<size_t>(n)), new_slots(static_cast<size_t>(n));
    const auto draw = [&] {
      return static_cast<int32_t>(rng() % static_cast<uint32_t>(experts + 1)) - 1;
    };
    for (auto& e : old_slots) e = draw();
    // Permutations of the old slots (swaps, cycles) with some replaced.
    new_slots = old_slots;
    std::shuffle(new_slots.begin(), new_slots.end(), rng);
    for (auto& e : new_slots) e = rng() % 4 == 0 ? draw() : e;
    INFO("round " << round);
    const auto one = classify(old_slots, new_slots, per_rank);
    const auto two = waves(old_slots, new_slots, per_rank);
    const auto at = [&](const Slots& v, int32_t s) { return v[static_cast<size_t>(s)]; };
    std::vector<char> is_source(static_cast<size_t>(n), 0);
    for (int32_t d = 0; d < n; ++d) {
      const InPlaceRow& row = two[static_cast<size_t>(d)];
      // Unchanged and stable-sourced rows as with one wave.
      if (one[static_cast<size_t>(d)].how != RowRecovery::kJournaled) {
        CHECK(row == one[static_cast<size_t>(d)]);
        continue;
      }
      if (row.how == RowRecovery::kJournaled) continue;
      REQUIRE(row.how == RowRecovery::kFromJournaled);
      // Its source: journaled (written only in wave 2), holding the row's new expert.
      CHECK(two[static_cast<size_t>(row.source_slot)].how == RowRecovery::kJournaled);
      CHECK(at(old_slots, row.source_slot) == at(new_slots, d));
      CHECK(at(new_slots, d) >= 0);
      is_source[static_cast<size_t>(row.source_slot)] = 1;
    }
    // A journaled row with an expert is a source of another, or has no journaled old
    // holder it could have copied from.
    for (int32_t d = 0; d < n; ++d) {
      if (two[static_cast<size_t>(d)].how != RowRecovery::kJournaled || at(new_slots, d) < 0 ||
          is_source[static_cast<size_t>(d)] != 0) {
        continue;
      }
      for (int32_t s = 0; s < n; ++s) {
        if (s == d || two[static_cast<size_t>(s)].how != RowRecovery::kJournaled) continue;
        CHECK(at(old_slots, s) != at(new_slots, d));
      }
    }
  }
}

}  // namespace
}  // namespace eplb::plan
