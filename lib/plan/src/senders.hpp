// Internal to eplb_plan: choosing which old holder sends each logical expert a rank lacks,
// and the topology check make_plan and summarize share.
//
// Pure and local. Deterministic: loops run in rank / job order only, never over hash maps.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "eplb/plan/plan.hpp"

namespace eplb::plan::detail {

// An index into a vector from a non-negative int32_t id or count (ranks, rows, experts).
inline size_t idx(int32_t i) { return static_cast<size_t>(i); }

// Throws core::Error(kUsage) unless `topology` is unknown or gives each of num_ep_ranks EP
// ranks a node index >= 0.
void check_topology(const Topology& topology, int32_t num_ep_ranks);

// One unit of transfer in one layer: EP rank `dst_rank` lacks logical expert `expert_id`
// and receives it into new row `dst_row` (its kReceived row).
struct Job {
  int32_t expert_id = -1;
  int32_t dst_rank = -1;
  int32_t dst_row = -1;
};

// The EP ranks holding each logical expert in the old placement of one layer, ascending
// and distinct, as one flat array (CSR) so building it allocates nothing per expert.
struct Holders {
  std::vector<int32_t> offsets;  // [num_experts + 1]
  std::vector<int32_t> ranks;
  std::span<const int32_t> of(int32_t expert_id) const {
    return {ranks.data() + offsets[idx(expert_id)],
            idx(offsets[idx(expert_id) + 1] - offsets[idx(expert_id)])};
  }
};

// vLLM's rule (docs/PERFORMANCE.md). `jobs` sorted by (expert_id, dst_rank); writes the
// sending EP rank of job i to senders[i].
void assign_vllm(std::span<const Job> jobs, const Holders& holders, std::vector<int32_t>& senders);

// Min-max of experts sent per rank in this layer (optimal), then fewest inter-node jobs
// among the tried assignments, then lower `cumulative_sent`, then lower rank.
// `jobs` sorted by (expert_id, dst_rank); `cumulative_sent` has one entry per EP rank.
class BalancedAssigner {
 public:
  BalancedAssigner(int32_t num_ep_ranks, const Topology& topology);
  void assign(std::span<const Job> jobs, const Holders& holders,
              const std::vector<int64_t>& cumulative_sent, std::vector<int32_t>& senders);

 private:
  int32_t greedy(std::span<const Job> jobs, const Holders& holders,
                 const std::vector<int64_t>& cumulative_sent, int32_t cap,
                 std::vector<int32_t>& senders);
  void reduce_max(std::span<const Job> jobs, const Holders& holders, std::vector<int32_t>& senders);
  void enforce_cap(std::span<const Job> jobs, const Holders& holders, int32_t cap,
                   std::vector<int32_t>& senders);
  template <typename IsSource, typename IsTarget>
  bool shift_one(std::span<const Job> jobs, const Holders& holders, std::vector<int32_t>& senders,
                 IsSource is_source, IsTarget is_target);
  int64_t inter_node_jobs(std::span<const Job> jobs, const std::vector<int32_t>& senders) const;
  bool same_node(int32_t a, int32_t b) const {
    return topology_.known() && topology_.node_of(a) == topology_.node_of(b);
  }

  int32_t num_ep_ranks_;
  Topology topology_;
  // Scratch reused across layers (no allocation per expert or per augmenting path).
  std::vector<int32_t> load_;
  std::vector<int32_t> order_;
  std::vector<int32_t> job_offsets_;
  std::vector<int32_t> jobs_by_sender_;
  std::vector<int32_t> parent_job_;
  std::vector<int32_t> parent_rank_;
  std::vector<int32_t> queue_;
  std::vector<int32_t> capped_senders_;
};

}  // namespace eplb::plan::detail
