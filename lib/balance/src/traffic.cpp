// Traffic-aware balancing: start from the placement the weights are in (OLD) and change as
// little as possible until every layer is as balanced as the reference's output.
//
// Per layer: the local search of layer_search.hpp from OLD; when OLD's groups cannot fit
// their nodes at the target, the search again from other groupings (two groups exchanged
// between nodes, or the reference's grouping); failing all, the reference's own layer with
// nodes and GPUs relabelled to overlap OLD the most.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <tuple>
#include <vector>

#include "eplb/balance/balance.hpp"
#include "eplb/core/error.hpp"
#include "layer_search.hpp"

namespace eplb::balance {
namespace {

using detail::LayerSearch;
using detail::LayerShape;

constexpr size_t kMaxProblemsListed = 20;

// The reference's layer with its nodes, and its GPUs within each node, relabelled to
// overlap OLD the most (greedy matching, largest overlap first, lowest ids on ties).
// Relabelling GPUs does not change any GPU's load, so the balance is the reference's.
std::vector<int32_t> relabelled_reference(const LayerShape& s, const std::vector<int32_t>& old_map,
                                          const std::vector<int32_t>& ref_map) {
  const auto per = static_cast<size_t>(s.slots_per_gpu);
  const auto num_gpus = static_cast<size_t>(s.num_gpus);
  // overlap[a][b]: distinct experts of reference GPU a that OLD GPU b holds.
  std::vector<std::vector<int32_t>> overlap(num_gpus, std::vector<int32_t>(num_gpus, 0));
  std::vector<std::vector<int32_t>> old_sets(num_gpus);
  for (size_t b = 0; b < num_gpus; ++b) {
    old_sets[b].assign(old_map.begin() + static_cast<std::ptrdiff_t>(b * per),
                       old_map.begin() + static_cast<std::ptrdiff_t>((b + 1) * per));
    std::sort(old_sets[b].begin(), old_sets[b].end());
  }
  for (size_t a = 0; a < num_gpus; ++a) {
    std::vector<int32_t> mine(ref_map.begin() + static_cast<std::ptrdiff_t>(a * per),
                              ref_map.begin() + static_cast<std::ptrdiff_t>((a + 1) * per));
    std::sort(mine.begin(), mine.end());
    mine.erase(std::unique(mine.begin(), mine.end()), mine.end());
    for (size_t b = 0; b < num_gpus; ++b) {
      for (int32_t e : mine)
        overlap[a][b] += std::binary_search(old_sets[b].begin(), old_sets[b].end(), e);
    }
  }
  // Greedy matching of items [0, n) of two sides by descending score.
  const auto match = [](size_t n, const auto& score) {
    std::vector<std::tuple<int64_t, size_t, size_t>> pairs;
    for (size_t a = 0; a < n; ++a) {
      for (size_t b = 0; b < n; ++b) pairs.emplace_back(-score(a, b), a, b);
    }
    std::sort(pairs.begin(), pairs.end());
    std::vector<size_t> to(n, n);
    std::vector<char> taken(n, 0);
    for (const auto& [neg, a, b] : pairs) {
      if (to[a] == n && !taken[b]) {
        to[a] = b;
        taken[b] = 1;
      }
    }
    return to;
  };
  const auto gpn = static_cast<size_t>(s.gpus_per_node);
  const size_t num_nodes = num_gpus / gpn;
  const auto node_to = match(num_nodes, [&](size_t na, size_t nb) {
    int64_t sum = 0;
    for (size_t a = na * gpn; a < (na + 1) * gpn; ++a) {
      int32_t best = 0;
      for (size_t b = nb * gpn; b < (nb + 1) * gpn; ++b) best = std::max(best, overlap[a][b]);
      sum += best;
    }
    return sum;
  });
  std::vector<int32_t> out(ref_map.size());
  for (size_t na = 0; na < num_nodes; ++na) {
    const size_t nb = node_to[na];
    const auto gpu_to = match(gpn, [&](size_t a, size_t b) {
      return static_cast<int64_t>(overlap[na * gpn + a][nb * gpn + b]);
    });
    for (size_t a = 0; a < gpn; ++a) {
      const size_t src = (na * gpn + a) * per, dst = (nb * gpn + gpu_to[a]) * per;
      std::copy_n(ref_map.begin() + static_cast<std::ptrdiff_t>(src), per,
                  out.begin() + static_cast<std::ptrdiff_t>(dst));
    }
  }
  return LayerSearch::keep_old_rows(old_map, out, s.slots_per_gpu);
}

// Node of each group in a layer that keeps every group on one node.
std::vector<int32_t> groups_to_nodes(const LayerShape& s, const std::vector<int32_t>& map) {
  std::vector<int32_t> node(static_cast<size_t>(s.num_experts / s.group_size), -1);
  for (size_t slot = 0; slot < map.size(); ++slot) {
    const auto gpu = static_cast<int32_t>(slot / static_cast<size_t>(s.slots_per_gpu));
    node[static_cast<size_t>(map[slot] / s.group_size)] = s.node_of(gpu);
  }
  return node;
}

// Experts moved in one layer, as experts_moved counts them.
int64_t layer_moves(const LayerShape& s, const std::vector<int32_t>& from,
                    const std::vector<int32_t>& to) {
  placement::Placement a, b;
  a.ep_size = b.ep_size = s.num_gpus;
  a.num_slots_per_rank = b.num_slots_per_rank = s.slots_per_gpu;
  a.physical_to_logical_map = {from};
  b.physical_to_logical_map = {to};
  return experts_moved(a, b);
}

// Groupings worth a search when OLD's does not fit: OLD's with two groups on different
// nodes exchanged (when OLD holds every group on one node), then the reference's.
std::vector<std::vector<int32_t>> candidate_groupings(const LayerShape& s,
                                                      const std::vector<int32_t>& old_map,
                                                      const std::vector<int32_t>& ref_map) {
  std::vector<std::vector<int32_t>> out;
  if (s.group_size == 0) return out;
  const auto num_groups = static_cast<size_t>(s.num_experts / s.group_size);
  std::vector<int32_t> old_node(num_groups, -1);
  bool all_pinned = true;
  for (size_t slot = 0; slot < old_map.size(); ++slot) {
    if (old_map[slot] < 0) continue;
    const auto group = static_cast<size_t>(old_map[slot] / s.group_size);
    const int32_t node =
        s.node_of(static_cast<int32_t>(slot / static_cast<size_t>(s.slots_per_gpu)));
    if (old_node[group] >= 0 && old_node[group] != node) all_pinned = false;
    old_node[group] = node;
  }
  if (all_pinned && std::find(old_node.begin(), old_node.end(), -1) == old_node.end()) {
    for (size_t a = 0; a < num_groups; ++a) {
      for (size_t b = a + 1; b < num_groups; ++b) {
        if (old_node[a] == old_node[b]) continue;
        auto grouping = old_node;
        std::swap(grouping[a], grouping[b]);
        out.push_back(std::move(grouping));
      }
    }
  }
  out.push_back(groups_to_nodes(s, ref_map));
  return out;
}

// The search from OLD with every slot whose group `grouping` puts on another node emptied.
// Empty when it does not reach the target.
std::vector<int32_t> search_regrouped(const LayerShape& s, const std::vector<int32_t>& old_map,
                                      const std::vector<int32_t>& grouping,
                                      const std::vector<double>& loads, double target,
                                      TrafficStats& stats) {
  // A node's GPUs cannot all stay at or below the target when their sum exceeds it.
  std::vector<double> node_load(static_cast<size_t>(s.num_gpus / s.gpus_per_node), 0.0);
  for (size_t e = 0; e < loads.size(); ++e) {
    node_load[static_cast<size_t>(grouping[e / static_cast<size_t>(s.group_size)])] += loads[e];
  }
  for (double total : node_load) {
    if (total > target * s.gpus_per_node) return {};
  }
  std::vector<int32_t> start = old_map;
  for (size_t slot = 0; slot < start.size(); ++slot) {
    const auto gpu = static_cast<int32_t>(slot / static_cast<size_t>(s.slots_per_gpu));
    if (start[slot] >= 0 &&
        grouping[static_cast<size_t>(start[slot] / s.group_size)] != s.node_of(gpu)) {
      start[slot] = -1;
    }
  }
  // Each node needs a free slot for every expert of its groups that it does not hold yet
  // (an OLD without hierarchy may hold many replicas there): otherwise skip this grouping.
  const auto num_nodes = static_cast<size_t>(s.num_gpus / s.gpus_per_node);
  std::vector<int64_t> spare(num_nodes, 0);
  std::vector<char> held(loads.size(), 0);
  for (size_t slot = 0; slot < start.size(); ++slot) {
    const auto node = static_cast<size_t>(
        s.node_of(static_cast<int32_t>(slot / static_cast<size_t>(s.slots_per_gpu))));
    if (start[slot] < 0) {
      ++spare[node];
    } else {
      held[static_cast<size_t>(start[slot])] = 1;
    }
  }
  for (size_t e = 0; e < held.size(); ++e) {
    if (!held[e]) --spare[static_cast<size_t>(grouping[e / static_cast<size_t>(s.group_size)])];
  }
  if (*std::min_element(spare.begin(), spare.end()) < 0) return {};
  LayerSearch search(s, old_map, start, loads, target, grouping);
  if (!search.run(stats)) return {};
  return search.result();
}

void check_old(const placement::Placement& old_p, const Loads& loads, const Config& config) {
  core::ProblemList problems;
  if (old_p.num_layers() != loads.num_layers()) {
    problems.add(fmt::format(
        "the old placement has {} layers, the loads {}{}", old_p.num_layers(), loads.num_layers(),
        old_p.model_layer_ids.empty()
            ? fmt::format(" (if one has a row per hidden layer, as SGLang's files do, {})",
                          placement::kModelLayersHint)
            : ""));
  }
  if (old_p.num_logical_experts != loads.num_logical_experts) {
    problems.add(fmt::format("the old placement has {} logical experts, the loads {}",
                             old_p.num_logical_experts, loads.num_logical_experts));
  }
  if (old_p.ep_size != config.num_gpus || old_p.num_slots() != config.num_replicas) {
    problems.add(fmt::format(
        "the old placement has ep_size {} and {} slots; traffic-aware balancing keeps both "
        "(--ep-size {}, --num-replicas {})",
        old_p.ep_size, old_p.num_slots(), config.num_gpus, config.num_replicas));
  }
  problems.throw_if_any();
  size_t listed = 0;
  for (size_t layer = 0; layer < old_p.physical_to_logical_map.size(); ++layer) {
    std::vector<char> held(static_cast<size_t>(loads.num_logical_experts), 0);
    for (int32_t e : old_p.physical_to_logical_map[layer]) {
      if (e >= 0) held[static_cast<size_t>(e)] = 1;
    }
    for (size_t e = 0; e < held.size(); ++e) {
      if (held[e] || listed++ >= kMaxProblemsListed) continue;
      problems.add(fmt::format(
          "layer {}, logical expert {}: the old placement holds no replica of it, so its "
          "weights cannot be moved anywhere",
          layer, e));
    }
  }
  if (listed > kMaxProblemsListed) {
    problems.add(fmt::format("... and {} more experts missing from the old placement",
                             listed - kMaxProblemsListed));
  }
  problems.throw_if_any();
}

}  // namespace

placement::Placement rebalance_from(const placement::Placement& old_p, const Loads& loads,
                                    const Config& config, const placement::Placement& reference,
                                    TrafficStats* stats_out) {
  check_old(old_p, loads, config);
  EPLB_ASSERT(reference.ep_size == config.num_gpus && reference.num_layers() == loads.num_layers());
  const bool hier = config.hierarchical() && config.num_nodes > 1;
  LayerShape shape;
  shape.num_gpus = config.num_gpus;
  shape.slots_per_gpu = config.num_replicas / config.num_gpus;
  shape.num_experts = loads.num_logical_experts;
  shape.gpus_per_node = hier ? config.num_gpus / config.num_nodes : config.num_gpus;
  shape.group_size = hier ? loads.num_logical_experts / config.num_groups : 0;
  TrafficStats stats;
  placement::Placement out = reference;
  for (int32_t layer = 0; layer < loads.num_layers(); ++layer) {
    const auto l = static_cast<size_t>(layer);
    const auto ref_loads = gpu_loads(reference, layer, loads.per_layer[l]);
    const double target = *std::max_element(ref_loads.begin(), ref_loads.end());
    const auto& old_map = old_p.physical_to_logical_map[l];
    LayerSearch search(shape, old_map, old_map, loads.per_layer[l], target);
    if (search.balanced() && search.result() == old_map) {
      ++stats.layers_unchanged;
      out.physical_to_logical_map[l] = old_map;
      continue;
    }
    if (search.run(stats)) {
      ++stats.layers_searched;
      out.physical_to_logical_map[l] = search.result();
      continue;
    }
    // Stuck: OLD's groups do not fit its nodes at the reference's balance. Try other
    // groupings (each swap of two groups between nodes, and the reference's grouping with
    // its nodes relabelled onto OLD's), keeping every slot whose group stays on its node;
    // keep the cheapest that reaches the balance, or the reference's layer if cheaper.
    auto ref_map = relabelled_reference(shape, old_map, reference.physical_to_logical_map[l]);
    std::vector<int32_t> best_map;
    int64_t best_moves = layer_moves(shape, old_map, ref_map);
    TrafficStats best_trial;
    for (const auto& grouping : candidate_groupings(shape, old_map, ref_map)) {
      TrafficStats trial;
      auto regrouped =
          search_regrouped(shape, old_map, grouping, loads.per_layer[l], target, trial);
      if (regrouped.empty()) continue;
      const int64_t moves = layer_moves(shape, old_map, regrouped);
      if (moves < best_moves || (moves == best_moves && best_map.empty())) {
        best_moves = moves;
        best_map = std::move(regrouped);
        best_trial = trial;
      }
    }
    if (!best_map.empty()) {
      ++stats.layers_regrouped;
      stats.swaps += best_trial.swaps;
      stats.repoints += best_trial.repoints;
      out.physical_to_logical_map[l] = std::move(best_map);
      continue;
    }
    ++stats.layers_fallback;
    out.physical_to_logical_map[l] = std::move(ref_map);
  }
  if (stats_out) *stats_out = stats;
  return out;
}

}  // namespace eplb::balance
