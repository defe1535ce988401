// Helpers shared by the plan tests: placement builders, a seeded random generator of
// placement pairs, and independent reference computations the planner is checked against.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "eplb/core/to_size.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/plan/plan.hpp"

namespace eplb::plan::test {

using core::to_size;
using placement::Placement;
using Map = std::vector<int32_t>;

inline Placement make_placement(int32_t ep_size, int32_t slots_per_rank, std::vector<Map> layers) {
  Placement p;
  p.ep_size = ep_size;
  p.num_slots_per_rank = slots_per_rank;
  int32_t max_id = -1;
  for (const auto& layer : layers) {
    for (int32_t e : layer) max_id = std::max(max_id, e);
  }
  p.num_logical_experts = max_id + 1;
  p.physical_to_logical_map = std::move(layers);
  return p;
}

inline RowPlan unchanged(int32_t e, int32_t row) { return {RowSource::kUnchanged, e, row, -1}; }
inline RowPlan local(int32_t e, int32_t old_row) { return {RowSource::kLocal, e, old_row, -1}; }
inline RowPlan received(int32_t e, int32_t peer) { return {RowSource::kReceived, e, -1, peer}; }
inline RowPlan copy(int32_t e, int32_t new_row) { return {RowSource::kCopy, e, new_row, -1}; }
inline RowPlan empty() { return {RowSource::kEmpty, -1, -1, -1}; }

// Rows of `rank` in `layer` of a placement (empty when the rank is beyond its ep_size).
inline Map rank_rows(const Placement& p, int32_t layer_idx, int32_t rank) {
  if (rank >= p.ep_size) return {};
  const auto& map = p.physical_to_logical_map[to_size(layer_idx)];
  const auto begin = map.begin() + static_cast<ptrdiff_t>(rank) * p.num_slots_per_rank;
  return Map(begin, begin + p.num_slots_per_rank);
}

// Distinct logical experts `rank` needs in new and holds in no old row, ascending.
inline Map lacking(const Placement& old_p, const Placement& new_p, int32_t layer_idx,
                   int32_t rank) {
  const Map held = rank_rows(old_p, layer_idx, rank);
  std::set<int32_t> out;
  for (int32_t e : rank_rows(new_p, layer_idx, rank)) {
    if (e >= 0 && std::find(held.begin(), held.end(), e) == held.end()) out.insert(e);
  }
  return Map(out.begin(), out.end());
}

struct RandomShape {
  int32_t num_layers, old_ep, old_rows, new_ep, new_rows, num_experts;
};

// A random old placement (replicas, same-rank duplicates, empty slots) and a new one using
// only experts the old one holds in that layer.
inline std::pair<Placement, Placement> random_pair(std::mt19937_64& rng, const RandomShape& s) {
  auto uniform = [&](int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
  };
  std::vector<Map> old_layers, new_layers;
  for (int32_t layer = 0; layer < s.num_layers; ++layer) {
    Map old_map(to_size(s.old_ep) * to_size(s.old_rows));
    for (auto& e : old_map) e = uniform(0, 9) == 0 ? -1 : uniform(0, s.num_experts - 1);
    if (s.old_rows > 1 && uniform(0, 2) == 0) {  // a second copy on the same rank
      const int32_t rank = uniform(0, s.old_ep - 1);
      old_map[to_size(rank * s.old_rows + 1)] = old_map[to_size(rank * s.old_rows)];
    }
    if (std::all_of(old_map.begin(), old_map.end(), [](int32_t e) { return e < 0; }))
      old_map[0] = 0;
    Map present;
    for (int32_t e : old_map) {
      if (e >= 0) present.push_back(e);
    }
    Map new_map(to_size(s.new_ep) * to_size(s.new_rows));
    const bool shuffle = uniform(0, 3) == 0 && new_map.size() == old_map.size();
    if (shuffle) {  // a pure rearrangement, as a load balancer without new replicas makes
      new_map = old_map;
      std::shuffle(new_map.begin(), new_map.end(), rng);
    } else {
      for (auto& e : new_map) {
        e = uniform(0, 11) == 0
                ? -1
                : present[to_size(uniform(0, static_cast<int32_t>(present.size()) - 1))];
      }
    }
    old_layers.push_back(std::move(old_map));
    new_layers.push_back(std::move(new_map));
  }
  return {make_placement(s.old_ep, s.old_rows, std::move(old_layers)),
          make_placement(s.new_ep, s.new_rows, std::move(new_layers))};
}

// vLLM's rule written independently of lib/plan: sender[dst] for expert e, -1 if none.
inline std::vector<std::vector<int32_t>> vllm_senders(const Placement& old_p,
                                                      const Placement& new_p, int32_t layer_idx,
                                                      int32_t num_experts, int32_t num_ranks) {
  std::vector<std::vector<int32_t>> sender(to_size(num_experts),
                                           std::vector<int32_t>(to_size(num_ranks), -1));
  for (int32_t e = 0; e < num_experts; ++e) {
    std::vector<int32_t> holders, receivers;
    for (int32_t r = 0; r < old_p.ep_size; ++r) {
      const Map rows = rank_rows(old_p, layer_idx, r);
      if (std::find(rows.begin(), rows.end(), e) != rows.end()) holders.push_back(r);
    }
    for (int32_t r = 0; r < new_p.ep_size; ++r) {
      const Map rows = rank_rows(new_p, layer_idx, r);
      const bool needs = std::find(rows.begin(), rows.end(), e) != rows.end();
      if (needs && std::find(holders.begin(), holders.end(), r) == holders.end()) {
        receivers.push_back(r);
      }
    }
    if (holders.empty()) continue;
    const size_t k = receivers.size() / holders.size();
    for (size_t i = 0; i < holders.size(); ++i) {
      for (size_t t = 0; t < k; ++t) sender[to_size(e)][to_size(receivers[i * k + t])] = holders[i];
      if (holders.size() * k + i < receivers.size()) {
        sender[to_size(e)][to_size(receivers[holders.size() * k + i])] = holders[i];
      }
    }
  }
  return sender;
}

// Per-layer experts sent by the busiest rank.
inline std::vector<int64_t> busiest_per_layer(const Plan& plan) {
  std::vector<int64_t> out;
  for (const LayerPlan& layer : plan.layers) {
    std::vector<int64_t> sent(to_size(plan.num_ep_ranks()), 0);
    for (const Message& m : layer.messages) {
      sent[to_size(m.src_rank)] += static_cast<int64_t>(m.expert_ids.size());
    }
    out.push_back(sent.empty() ? 0 : *std::max_element(sent.begin(), sent.end()));
  }
  return out;
}

// Whether every (expert, receiver) transfer of a layer can be served with every sender
// sending at most `cap` experts: bipartite b-matching by augmenting paths, independent of
// the planner's algorithm.
class CapFeasibility {
 public:
  CapFeasibility(std::vector<std::vector<int32_t>> job_holders, int32_t num_ranks)
      : holders_(std::move(job_holders)), num_ranks_(num_ranks) {}

  bool feasible(int32_t cap) {
    assigned_.assign(to_size(num_ranks_), {});
    for (size_t job = 0; job < holders_.size(); ++job) {
      visited_.assign(to_size(num_ranks_), false);
      if (!place(static_cast<int32_t>(job), cap)) return false;
    }
    return true;
  }

 private:
  bool place(int32_t job, int32_t cap) {
    for (int32_t sender : holders_[to_size(job)]) {
      const size_t s = to_size(sender);
      if (visited_[s]) continue;
      visited_[s] = true;
      if (static_cast<int32_t>(assigned_[s].size()) < cap) {
        assigned_[s].push_back(job);
        return true;
      }
      for (int32_t& other : assigned_[s]) {
        const int32_t moved = other;
        other = job;  // tentatively take the place of `moved`
        if (place(moved, cap)) return true;
        other = moved;
      }
    }
    return false;
  }

  std::vector<std::vector<int32_t>> holders_;
  int32_t num_ranks_;
  std::vector<std::vector<int32_t>> assigned_;
  std::vector<bool> visited_;
};

}  // namespace eplb::plan::test
