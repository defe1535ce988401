// Loading and validating everything a rebalance reads, before any data moves.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "eplb/engine/rebalance_types.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/placement/elastic.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/plan/plan.hpp"

namespace eplb::engine {

struct Inputs {
  placement::Placement old_placement;
  placement::Placement new_placement;
  std::vector<io::TensorSpec> tensors;  // the checkpoint's fixed tensor order
  // The input manifest's Hugging Face section, carried to the output so that an imported
  // checkpoint can still be exported after any number of rebalances.
  std::optional<io::HfSource> hugging_face;
  std::filesystem::path input_dir;
  // The input checkpoint's id and its shards' sizes and xxh3 (from the manifest): what the
  // output's id is derived from, with the new placement.
  std::string input_identity;
  // EP ranks -> processes (block distribution), and the EP ranks this process hosts.
  plan::ProcessMap process_map;
  std::vector<int32_t> my_ranks;
  // Input shards of my_ranks, same order; empty for a rank beyond the old ep_size.
  std::vector<std::optional<io::ShardReader>> shards;
};

// Collective. Parses both placements and the input manifest and checks them against each
// other (problems printed by rank 0), checks the process count (at most one process per
// EP rank; a process hosts a block of EP ranks), then opens this process's shards and
// checks their attributes, tensors and per-layer logical ids against the old placement
// (problems printed by the process that owns the shard). Throws on every rank if any rank
// found a problem.
Inputs load_inputs(const runtime::MpiSession& session, const RebalanceOptions& options);

// A rebalance's exchange plan, the topology it was made for and its summary.
struct PlannedExchange {
  plan::Topology topology;
  plan::Plan plan;
  plan::PlanStats stats;
};

// Local, identical on every process (agreed_topology): plans the exchange from `inputs`'
// old to new placement and fills the report's plan figures (seconds_plan, experts_moved,
// min_experts_required, messages, layer_bytes).
PlannedExchange plan_exchange(const runtime::MpiSession& session, const RebalanceOptions& options,
                              const Inputs& inputs, RebalanceReport& report);

// A disk-to-disk run's transport (copy or in place) within --max-staging-bytes: NCCL's
// device staging takes half of the budget, the layer buffers on the host the rest (all of
// it with MPI). Collective (make_transport); fills the report's backend, its reason and
// the staging figures.
struct DiskTransport {
  std::unique_ptr<transport::Transport> transport;
  size_t host_budget = 0;   // what the layer buffers may take
  size_t device_bytes = 0;  // NCCL's device staging; 0 with MPI
};
DiskTransport make_disk_transport(const runtime::MpiSession& session,
                                  const RebalanceOptions& options, RebalanceReport& report);

// Local. How `options` names the old and new placements, for placement::load_pair; a
// placement without ep_size or expert count takes the checkpoint's (`manifest`, when it
// was read) and the new one then the old one's.
placement::PairOptions pair_options_of(const RebalanceOptions& options,
                                       const io::Manifest* manifest);

}  // namespace eplb::engine
