// Making a placement from load statistics: DeepSeek's EPLB algorithm, reproduced exactly,
// and a traffic-aware variant that starts from the placement the weights are in now.
//
// Pure, deterministic and local: no MPI, CUDA or HDF5, no communication. Every process
// computes the same placement from the same loads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eplb/placement/placement.hpp"

namespace eplb::balance {

// Load statistics per MoE layer and logical expert (tokens routed, or any non-negative
// measure of work), already folded onto logical experts and summed over steps.
struct Loads {
  int32_t num_logical_experts = 0;
  std::vector<std::vector<double>> per_layer;  // [layer][logical expert id]
  int32_t num_layers() const { return static_cast<int32_t>(per_layer.size()); }
};

// The reference's parameters. num_replicas counts every physical slot (logical experts
// plus redundant replicas), as DeepSeek's `num_replicas` does; num_gpus is the EP size.
struct Config {
  int32_t num_replicas = 0;
  int32_t num_groups = 1;
  int32_t num_nodes = 1;
  int32_t num_gpus = 0;

  // DeepSeek's rule: groups packed to nodes when num_groups % num_nodes == 0, otherwise
  // one global balance (as if there were one group and one node).
  bool hierarchical() const { return num_groups % num_nodes == 0; }
};

// Every way `config` cannot serve `num_logical_experts` experts, each naming the option and
// its valid range ("--num-groups 5 must divide the 256 logical experts"). Empty when usable.
std::vector<std::string> check_config(const Config& config, int32_t num_logical_experts);

// DeepSeek EPLB (deepseek-ai/EPLB `rebalance_experts`), one placement for all layers:
// ep_size = num_gpus, num_slots_per_rank = num_replicas / num_gpus. Per layer:
//   1. (hierarchical) groups of consecutive experts are packed to nodes, heaviest first,
//      each to the lightest node that still has room;
//   2. within each node, every redundant slot goes to the expert with the highest load
//      per replica (lowest id among equal maxima);
//   3. the node's physical experts are packed to its GPUs the same way as in 1.
// Loads are converted to float32 and every sum and quotient is taken in float32, in the
// reference's order, with ties broken as a stable descending sort and the first minimum
// or maximum break them, so the output equals the reference's element for element
// (exactly so for integer loads whose per-group sums stay below 2^24).
// Throws core::Error(kUsage) with check_config's problems.
placement::Placement rebalance_experts(const Loads& loads, const Config& config);

// Statistics of the traffic-aware search, for the report.
struct TrafficStats {
  int32_t layers_unchanged = 0;  // OLD already as balanced as the reference
  int32_t layers_searched = 0;   // reached the reference's balance by local moves
  int32_t layers_regrouped = 0;  // needed the reference's groups-to-nodes, then searched
  int32_t layers_fallback = 0;   // took the reference's layer, relabelled onto OLD's GPUs
  int64_t swaps = 0;             // slot swaps between GPUs applied
  int64_t repoints = 0;          // replica slots re-pointed to another logical expert
};

// A placement that is as balanced as the reference's (in every layer, its busiest GPU is
// no busier, an expert's load split evenly over its replicas) and moves as few experts
// from `old_placement` as the search finds. Starts from OLD and applies, greedily, the
// move that removes the most load above the reference's maximum per expert moved: a swap
// of two slots between GPUs, or re-pointing a slot of an expert with several replicas to
// another expert. Every logical expert keeps at least one replica; with hierarchical
// balancing, the experts of a group that OLD held on one node stay on that node; an
// expert that stays on a GPU stays in its old row. Empty slots of OLD are filled. A layer
// where no move helps takes the reference's layer with its nodes and GPUs relabelled to
// overlap OLD the most.
// Preconditions (throws core::Error(kInput) otherwise): OLD has the loads' layer count and
// expert count, ep_size == num_gpus, num_replicas slots, and holds every logical expert in
// every layer. `reference` must be rebalance_experts(loads, config).
placement::Placement rebalance_from(const placement::Placement& old_placement, const Loads& loads,
                                    const Config& config, const placement::Placement& reference,
                                    TrafficStats* stats = nullptr);

// Load of each GPU in one layer: the sum over its slots of load / replica count, each
// GPU's terms summed in ascending order so that equal slot multisets give equal loads.
std::vector<double> gpu_loads(const placement::Placement& placement, int32_t layer_idx,
                              const std::vector<double>& layer_loads);

// Mean GPU load / max GPU load of one layer (1 for an all-zero layer).
double balancedness(const placement::Placement& placement, int32_t layer_idx,
                    const std::vector<double>& layer_loads);

// Experts moved between two placements of the same shape, counted as `plan` counts them:
// per layer and EP rank, the distinct logical experts it holds in `to` and not in `from`.
int64_t experts_moved(const placement::Placement& from, const placement::Placement& to);

}  // namespace eplb::balance
