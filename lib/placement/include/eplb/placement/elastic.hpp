// Loading the old and new placements of one rebalance together, as `run` and `plan` do:
// separate EP sizes for forms that carry none, the expert count carried over from the old
// placement, vLLM's elastic-EP rank_mapping, and the refusal to drop experts.
//
// Pure and local: no MPI, CUDA or HDF5. Every process computes the same result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eplb/placement/placement.hpp"

namespace eplb::placement {

// vLLM's rank_mapping {"old_rank": new_rank or -1}: new_rank_of[old_rank].
struct RankMapping {
  std::vector<int32_t> new_rank_of;
  int32_t num_old_ranks() const { return static_cast<int32_t>(new_rank_of.size()); }
  int32_t num_kept_ranks() const;  // entries that are not -1
  bool operator==(const RankMapping&) const = default;
};

// Parses {"0": 0, "1": -1, "2": 1}: every old rank 0..n-1 exactly once, each mapped to -1
// or a new rank; the kept ranks' new ranks distinct. Throws core::Error(kInput) with
// every problem, located as for placements.
RankMapping parse_rank_mapping(const std::string& text, const std::string& source_name);
// An inline JSON argument or a file path (see is_inline_json).
RankMapping load_rank_mapping_argument(const std::string& arg);

struct PairOptions {
  std::string old_arg, new_arg;  // paths or inline JSON (is_inline_json)
  // --old-ep-size / --new-ep-size (or --ep-size for both), for forms without ep_size.
  std::optional<int32_t> old_ep_size, new_ep_size;
  // What the input checkpoint holds, when there is one (`run`): the old placement's
  // fallback ep_size and expected expert count.
  std::optional<int32_t> checkpoint_ep_size, checkpoint_num_logical_experts;
  std::optional<RankMapping> rank_mapping;
  bool allow_dropping_experts = false;
  // The model's layers (--model-layers, or the checkpoint's hugging_face section), for both
  // files; otherwise the new file takes the old one's when it records them.
  std::optional<ModelLayers> model_layers;
};

struct PlacementPair {
  Placement old_placement, new_placement;
  std::string old_name, new_name;  // for messages (argument_name)
};

// Loads both placements and checks that new is reachable from old (check_compatible).
// The new placement takes its ep_size from --new-ep-size, else the rank mapping's kept
// ranks (so scale-up with a form without ep_size needs --new-ep-size), else the old
// placement's; its expert count from the old placement; the model's layer numbering from
// options.model_layers, else from the old placement when it records it.
//
// With a rank mapping, vLLM's semantics (rearrange_expert_weights_inplace): old_ep_size is
// the mapping's size. When ranks are removed (scale-down) or renumbered, the new map is
// padded to the old size: old rank r's slots get new rank rank_mapping[r]'s experts, or
// -1 when it is removed, so removed ranks only send. When ranks are added (scale-up), old
// ranks keep their numbers (rank_mapping[r] == r; renumbering there is refused) and the
// added ranks hold nothing before: the same as padding the old map with -1.
// Throws core::Error(kInput) listing every problem of both files and of their pairing.
PlacementPair load_pair(const PairOptions& options);

// The rank-mapping step of load_pair, on placements already loaded. Returns the new
// placement as the rebalance sees it; throws core::Error(kInput) listing every problem.
Placement apply_rank_mapping(const Placement& old_placement, const Placement& new_placement,
                             const RankMapping& mapping, const std::string& new_name);

}  // namespace eplb::placement
