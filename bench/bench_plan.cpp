// Planning benchmark: milliseconds per make_plan (median of N runs, one core) at
// DeepSeek-V3 scale and at 64 ranks x 61 layers x 320 slots, for both sender policies,
// and how much the balanced policy lowers the busiest sender against vLLM's rule.
//
//   bench_plan [runs=21] [seed=1]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "eplb/placement/placement.hpp"
#include "eplb/plan/plan.hpp"

namespace {

using eplb::placement::Placement;
namespace plan = eplb::plan;

struct Scale {
  const char* name;
  int32_t num_layers, ep_size, slots_per_rank, num_experts, ranks_per_node;
};

// Every logical expert once plus (slots - experts) replicas of random experts, shuffled:
// what an EPLB-style balancer produces, with no relation between old and new.
Placement random_placement(const Scale& s, std::mt19937_64& rng) {
  Placement p;
  p.ep_size = s.ep_size;
  p.num_slots_per_rank = s.slots_per_rank;
  p.num_logical_experts = s.num_experts;
  std::uniform_int_distribution<int32_t> any_expert(0, s.num_experts - 1);
  for (int32_t layer = 0; layer < s.num_layers; ++layer) {
    std::vector<int32_t> map(static_cast<size_t>(p.num_slots()));
    std::iota(map.begin(), map.begin() + s.num_experts, 0);
    for (size_t slot = static_cast<size_t>(s.num_experts); slot < map.size(); ++slot)
      map[slot] = any_expert(rng);
    std::shuffle(map.begin(), map.end(), rng);
    p.physical_to_logical_map.push_back(std::move(map));
  }
  return p;
}

double median_ms(int runs, const Placement& old_p, const Placement& new_p,
                 const plan::Topology& topology, plan::SenderPolicy policy) {
  std::vector<double> ms;
  // One untimed run first, so that the figures do not include first-touch page faults.
  size_t sink = plan::make_plan(old_p, new_p, topology, policy).layers.size();
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const plan::Plan result = plan::make_plan(old_p, new_p, topology, policy);
    const auto stop = std::chrono::steady_clock::now();
    sink += result.layers.size();
    ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  if (sink == 0) std::abort();  // keeps the calls observable
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void run_scale(const Scale& s, int runs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Placement old_p = random_placement(s, rng);
  const Placement new_p = random_placement(s, rng);
  const plan::Topology flat{};
  const plan::Topology nodes = plan::Topology::blocks(s.ep_size, s.ranks_per_node);
  const double vllm_ms = median_ms(runs, old_p, new_p, flat, plan::SenderPolicy::kVllm);
  const double bal_ms = median_ms(runs, old_p, new_p, flat, plan::SenderPolicy::kBalanced);
  const double node_ms = median_ms(runs, old_p, new_p, nodes, plan::SenderPolicy::kBalanced);
  const auto vllm =
      plan::summarize(plan::make_plan(old_p, new_p, flat, plan::SenderPolicy::kVllm), nodes);
  const auto bal = plan::summarize(plan::make_plan(old_p, new_p, flat), nodes);
  const auto node = plan::summarize(plan::make_plan(old_p, new_p, nodes), nodes);
  fmt::print("{}: {} layers x {} ranks x {} slots ({} logical experts), {} runs\n", s.name,
             s.num_layers, s.ep_size, s.slots_per_rank, s.num_experts, runs);
  fmt::print(
      "  make_plan median ms: vllm {:.2f}  balanced {:.2f}  balanced+topology({}/node) {:.2f}\n",
      vllm_ms, bal_ms, s.ranks_per_node, node_ms);
  fmt::print("  experts moved {} (minimum {})\n", bal.experts_moved, bal.min_experts_required);
  fmt::print("  busiest sender, sum over layers: vllm {}  balanced {}  ratio {:.3f}\n",
             vllm.busiest_sender_experts, bal.busiest_sender_experts,
             static_cast<double>(bal.busiest_sender_experts) /
                 static_cast<double>(vllm.busiest_sender_experts));
  fmt::print(
      "  inter-node experts ({}/node): vllm {}  balanced {}  balanced+topology {} "
      "(busiest {})\n",
      s.ranks_per_node, vllm.inter_node_experts, bal.inter_node_experts, node.inter_node_experts,
      node.busiest_sender_experts);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 21;
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  run_scale({"DeepSeek-V3", 58, 32, 9, 256, 8}, runs, seed);
  run_scale({"EP64", 61, 64, 5, 256, 8}, runs, seed);
  return 0;
}
