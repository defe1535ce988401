// Which changed rows of an update in place must be journaled, and which can be rolled
// forward from bytes that stay in the checkpoint (docs/FORMAT.md "The in-place journal").
//
// Pure, deterministic and local: no MPI, CUDA or HDF5. Every process computes the same
// answer from the two placements alone.
//
// A physical slot is *stable* in a layer when it holds the same logical expert id, not -1,
// in the old and the new placement: an update in place never writes its row. A changed row
// whose new logical expert id has a stable holder in the same layer (on any EP rank) need
// not be journaled: until it is durably written, an intact copy of its bytes lies in the
// stable slot, from which recovery copies it (after checking its xxh3). Every other changed
// row (no stable holder, or a new slot of -1: zeros) is journaled.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace eplb::plan {

enum class RowRecovery : uint8_t {
  kUnchanged,   // stable: same logical expert id old and new; never written
  kJournaled,   // its new bytes go to the journal
  kFromSource,  // rolled forward from the stable slot `source_slot`
  // two_waves: rolled forward from the old bytes of the kJournaled slot `source_slot`; written
  // (wave 1) and durable before any journaled row is overwritten (wave 2).
  kFromJournaled,
};

struct InPlaceRow {
  RowRecovery how = RowRecovery::kJournaled;
  // kFromSource, kFromJournaled: the global physical slot (EP rank * slots per rank + row)
  // it copies from; else -1.
  int32_t source_slot = -1;
  bool operator==(const InPlaceRow&) const = default;
};

// Local. One layer: `old_slots` and `new_slots` are its physical_to_logical_map row in the
// old and the new placement (same length, a multiple of `num_slots_per_rank` > 0). Returns
// one entry per global physical slot. A kFromSource row copies from the stable holder on
// its own EP rank if there is one (recovery reads its own shard), else from the lowest
// stable slot holding that logical expert id.
//
// `two_waves`: besides, a changed row without a stable holder whose new logical expert
// has an old holder that is journaled becomes kFromJournaled (the journaled row's old bytes
// stay intact until wave 2): one row per swap pair, about half of a cycle of the "needs the
// old bytes of" graph, stays journaled (greedy in slot order, not minimal in general).
std::vector<InPlaceRow> classify_in_place_layer(std::span<const int32_t> old_slots,
                                                std::span<const int32_t> new_slots,
                                                int32_t num_slots_per_rank, bool two_waves = false);

}  // namespace eplb::plan
