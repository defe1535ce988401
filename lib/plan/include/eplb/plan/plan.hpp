// Exchange planning: from two placements to per-layer messages and per-row actions.
//
// Pure, deterministic and local: no MPI, CUDA or HDF5, no communication. Every process
// computes the same global plan from the two placements alone; the engine then executes
// its own part of it. All ids are EP ranks (checkpoint shards), never MPI processes: the
// mapping EP rank -> process is ProcessMap's job, so one process may host several EP ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eplb/placement/placement.hpp"

namespace eplb::plan {

// Which node each EP rank is on: the real map (an EP rank lives where the process hosting
// it runs), so a node's ranks need not be a contiguous block (`mpirun --map-by node`,
// uneven nodes, several EP ranks per process). Empty: unknown, no node preference.
struct Topology {
  std::vector<int32_t> node_of_rank;  // [EP rank] -> node index, 0-based

  bool known() const { return !node_of_rank.empty(); }
  // Precondition: known() and ep_rank in [0, node_of_rank.size()).
  int32_t node_of(int32_t ep_rank) const { return node_of_rank[static_cast<size_t>(ep_rank)]; }
  // Distinct node indices (0 when unknown).
  int32_t num_nodes() const;
  // Local. Contiguous blocks: EP rank r on node r / ranks_per_node; unknown (empty) when
  // ranks_per_node <= 0 or num_ep_ranks <= 0. The CLI planner's --ranks-per-node.
  static Topology blocks(int32_t num_ep_ranks, int32_t ranks_per_node);
  bool operator==(const Topology&) const = default;
};

// How a sender is chosen when a logical expert has several old holders.
enum class SenderPolicy {
  kBalanced,  // min-max send volume per layer, same-node sender preferred (ours)
  kVllm,      // vLLM's pairing rule (docs/PERFORMANCE.md), for comparison
};

// Where the bytes of one new row come from.
enum class RowSource : uint8_t {
  kUnchanged,  // old row == new row: same logical expert, bytes stay in place
  kLocal,      // copied from old row `src_row` of the same EP rank (lowest old row holding it)
  kReceived,   // arrives from EP rank `peer` (the lowest new row needing this expert)
  kCopy,       // copied from new row `src_row` of the same rank, which is kReceived
  kEmpty,      // new slot is -1: written as zeros
};

struct RowPlan {
  RowSource source = RowSource::kEmpty;
  int32_t expert_id = -1;  // logical expert id in the new placement, -1 if empty
  int32_t src_row = -1;    // kUnchanged: this row; kLocal: old row; kCopy: new row; else -1
  int32_t peer = -1;       // kReceived: the sending EP rank; else -1
  bool operator==(const RowPlan&) const = default;
};

// Everything `src_rank` sends to `dst_rank` in one layer, as one message.
// NOTE: entries are sorted by ascending logical expert id, and both sides lay out the
// bytes in this order (expert-major, then the checkpoint's tensor order). Sender and
// receiver rely on it to agree on every byte offset without communicating.
struct Message {
  int32_t src_rank = 0;
  int32_t dst_rank = 0;
  std::vector<int32_t> expert_ids;  // ascending, distinct
  std::vector<int32_t> src_rows;    // sender's old local row for each expert (lowest holding it)
  std::vector<int32_t> dst_rows;    // receiver's new local row for each expert (kReceived row)
  bool operator==(const Message&) const = default;
};

struct LayerPlan {
  std::vector<Message> messages;  // sorted by (src_rank, dst_rank); none empty
  // One entry per new EP rank (new_ep_size), each new_num_slots_per_rank rows.
  std::vector<std::vector<RowPlan>> rows;  // [new EP rank][new local row]
  bool operator==(const LayerPlan&) const = default;
};

struct Plan {
  int32_t old_ep_size = 0;
  int32_t new_ep_size = 0;
  int32_t old_num_slots_per_rank = 0;
  int32_t new_num_slots_per_rank = 0;
  std::vector<LayerPlan> layers;

  // EP ranks taking part: those that hold old slots, new slots, or both.
  int32_t num_ep_ranks() const { return old_ep_size > new_ep_size ? old_ep_size : new_ep_size; }
  bool operator==(const Plan&) const = default;
};

// Computes the global plan. Preconditions: both placements valid and compatible
// (placement::check_compatible returned nothing); otherwise throws core::Error(kInput)
// listing every problem (layer count mismatch, bad shape, and each (layer, logical expert
// id) needed by new but held by no old slot).
// Local, no communication. Deterministic: the same inputs give the same Plan on every
// process and machine (no hash-map order, no randomness), so every process may call it
// independently and rely on the others having computed the same messages.
// Old and new may differ in ep_size and num_slots_per_rank (elastic EP): a rank >= the
// old ep_size holds nothing old (only receives), a rank >= the new ep_size only sends.
// kBalanced: per layer, the busiest sender sends the fewest experts possible (never more
// than under kVllm). Among such choices it prefers senders on the receiver's node (a
// heuristic: two candidate assignments, the one with fewer inter-node transfers wins),
// then the sender with less sent in earlier layers, then the lowest rank.
// Both policies move exactly the minimum: each rank receives each logical expert it
// lacks once per layer. A known topology must give every EP rank (max of both ep_sizes)
// a node index >= 0; otherwise throws core::Error(kUsage).
Plan make_plan(const placement::Placement& old_placement, const placement::Placement& new_placement,
               const Topology& topology = {}, SenderPolicy policy = SenderPolicy::kBalanced);

// Messages of one layer sent by / received by `ep_rank`, in plan order.
std::vector<const Message*> messages_from(const LayerPlan& layer, int32_t ep_rank);
std::vector<const Message*> messages_to(const LayerPlan& layer, int32_t ep_rank);

// Counts in experts (one expert = all its tensors); multiply by bytes per expert.
struct RankStats {
  int64_t experts_sent = 0;
  int64_t experts_received = 0;
  int64_t messages_sent = 0;
  int64_t messages_received = 0;
  int64_t rows_unchanged = 0;
  int64_t rows_local = 0;  // kLocal + kCopy
  int64_t rows_empty = 0;
};

struct PlanStats {
  std::vector<RankStats> ranks;               // [EP rank]
  std::vector<std::vector<int64_t>> traffic;  // [src][dst] experts, summed over layers
  int64_t experts_moved = 0;                  // sum of experts_received
  // The minimum any plan must move: per layer and rank, the distinct experts it needs
  // in new and holds in no old row.
  int64_t min_experts_required = 0;
  // Sum over layers of the busiest rank's experts sent in that layer: the exchange of a
  // layer lasts as long as its busiest sender.
  int64_t busiest_sender_experts = 0;
  int64_t inter_node_experts = 0;  // experts crossing nodes (Topology known)
};

// Local. `ranks` and `traffic` have plan.num_ep_ranks() entries; inter_node_experts is 0
// when the topology is unknown. Throws core::Error(kUsage) as make_plan does.
PlanStats summarize(const Plan& plan, const Topology& topology = {});

// EP rank -> MPI process: process p hosts the block of EP ranks [p*k, p*k+k), k =
// ceil(num_ep_ranks / num_processes) (one each when the counts are equal).
struct ProcessMap {
  int32_t num_ep_ranks = 0;
  int32_t num_processes = 0;
  // Local. Process ep_rank / ceil(num_ep_ranks / num_processes). Throws core::Error(kUsage)
  // if either count is not positive, kInternal if ep_rank is outside [0, num_ep_ranks).
  int32_t process_of(int32_t ep_rank) const;
  // The inverse, ascending; empty for trailing processes when the blocks run out.
  std::vector<int32_t> ep_ranks_of(int32_t process) const;
};

// Local. The topology of EP ranks hosted as `map` says, on the nodes of their processes:
// EP rank r is on node_of_process[map.process_of(r)]. node_of_process has one entry per
// process (map.num_processes), each >= 0; otherwise throws core::Error(kUsage).
Topology topology_of_processes(const ProcessMap& map, const std::vector<int32_t>& node_of_process);

// Local. Node indices for a list of host names, one per rank: hosts numbered in order of
// first appearance ({"b", "a", "b"} -> {0, 1, 0}). Equal names are one node.
std::vector<int32_t> node_indices(const std::vector<std::string>& hosts);

}  // namespace eplb::plan
