// Loading and validating everything a rebalance reads, before any data moves.
#pragma once

#include <optional>
#include <vector>

#include "eplb/engine/rebalance.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::engine {

struct Inputs {
  placement::Placement old_placement;
  placement::Placement new_placement;
  std::vector<io::TensorSpec> tensors;   // the checkpoint's fixed tensor order
  std::optional<io::ShardReader> shard;  // this rank's input shard; none on a new rank
  std::filesystem::path input_dir;
};

// Collective. Parses both placements and the input manifest and checks them against each
// other (problems printed by rank 0), checks the process count, then opens this rank's
// shard and checks its attributes, tensors and per-layer logical ids against the old
// placement (problems printed by the rank that owns the shard). Throws on every rank if
// any rank found a problem.
Inputs load_inputs(const runtime::MpiSession& session, const RebalanceOptions& options);

}  // namespace eplb::engine
