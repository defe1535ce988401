// DeepSeek's EPLB (deepseek-ai/EPLB, eplb.py), written from its description: hierarchical
// balancing (groups to nodes, replicas within nodes, physical experts to GPUs) and the
// global fallback. The arithmetic is float32 like the reference's (`weight.float()`), so
// that equal loads per replica compare equal exactly where the reference's do.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "eplb/balance/balance.hpp"
#include "eplb/core/error.hpp"

namespace eplb::balance {
namespace {

struct Packing {
  std::vector<int32_t> pack;          // [item] -> pack index
  std::vector<int32_t> rank_in_pack;  // [item] -> position inside its pack
};

// Packs n items into num_packs packs of n / num_packs items each: items in descending
// weight order (stable: equal weights keep ascending index order), each to the lightest
// pack with room left (the lowest index among equally light ones). With one item per
// pack, item i goes to pack i unsorted, as in the reference.
Packing balanced_packing(const std::vector<float>& weight, int32_t num_packs) {
  const size_t num_items = weight.size();
  const size_t per_pack = num_items / static_cast<size_t>(num_packs);
  Packing out{std::vector<int32_t>(num_items), std::vector<int32_t>(num_items, 0)};
  if (per_pack == 1) {
    std::iota(out.pack.begin(), out.pack.end(), 0);
    return out;
  }
  std::vector<int32_t> order(num_items);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return weight[static_cast<size_t>(a)] > weight[static_cast<size_t>(b)];
  });
  std::vector<float> pack_weight(static_cast<size_t>(num_packs), 0.0f);
  std::vector<size_t> pack_items(static_cast<size_t>(num_packs), 0);
  for (int32_t item : order) {
    size_t best = pack_weight.size();
    for (size_t p = 0; p < pack_weight.size(); ++p) {
      if (pack_items[p] < per_pack &&
          (best == pack_weight.size() || pack_weight[p] < pack_weight[best])) {
        best = p;
      }
    }
    const auto i = static_cast<size_t>(item);
    out.pack[i] = static_cast<int32_t>(best);
    out.rank_in_pack[i] = static_cast<int32_t>(pack_items[best]++);
    pack_weight[best] += weight[i];
  }
  return out;
}

struct Replication {
  std::vector<int32_t> phy_to_log;  // [physical] -> logical (first num_log are the identity)
  std::vector<int32_t> count;       // [logical] -> replicas
};

// Adds num_phy - num_log replicas, each to the expert with the highest load per replica
// (the first of equal maxima), computed in float32 as weight / count.
Replication replicate_experts(const std::vector<float>& weight, size_t num_phy) {
  const size_t num_log = weight.size();
  Replication out{std::vector<int32_t>(num_phy), std::vector<int32_t>(num_log, 1)};
  std::iota(out.phy_to_log.begin(), out.phy_to_log.begin() + static_cast<std::ptrdiff_t>(num_log),
            0);
  for (size_t phy = num_log; phy < num_phy; ++phy) {
    size_t best = 0;
    float best_value = weight[0] / static_cast<float>(out.count[0]);
    for (size_t e = 1; e < num_log; ++e) {
      const float value = weight[e] / static_cast<float>(out.count[e]);
      if (value > best_value) {
        best = e;
        best_value = value;
      }
    }
    out.phy_to_log[phy] = static_cast<int32_t>(best);
    ++out.count[best];
  }
  return out;
}

// Sizes of one hierarchical balance (after the global fallback is applied).
struct Shape {
  size_t num_experts, num_groups, num_nodes, num_gpus, num_phy;
  size_t group_size() const { return num_experts / num_groups; }
  size_t groups_per_node() const { return num_groups / num_nodes; }
  size_t experts_per_node() const { return num_experts / num_nodes; }
  size_t phy_per_node() const { return num_phy / num_nodes; }
  size_t gpus_per_node() const { return num_gpus / num_nodes; }
  size_t phy_per_gpu() const { return num_phy / num_gpus; }
};

// One layer: physical slot -> logical expert id.
std::vector<int32_t> balance_layer(const std::vector<float>& weight, const Shape& s) {
  // 1. Groups to nodes. Node n then lists its groups in packing order ("node-major
  //    order"): position (n * groups_per_node + rank) * group_size + j for expert j of a group.
  std::vector<float> group_weight(s.num_groups);
  for (size_t g = 0; g < s.num_groups; ++g) {
    double sum = 0;  // exact for integer loads below 2^53; rounded once to float32
    for (size_t j = 0; j < s.group_size(); ++j) sum += weight[g * s.group_size() + j];
    group_weight[g] = static_cast<float>(sum);
  }
  const Packing groups = balanced_packing(group_weight, static_cast<int32_t>(s.num_nodes));
  std::vector<int32_t> node_order_to_log(s.num_experts);
  for (size_t g = 0; g < s.num_groups; ++g) {
    const size_t base = (static_cast<size_t>(groups.pack[g]) * s.groups_per_node() +
                         static_cast<size_t>(groups.rank_in_pack[g])) *
                        s.group_size();
    for (size_t j = 0; j < s.group_size(); ++j) {
      node_order_to_log[base + j] = static_cast<int32_t>(g * s.group_size() + j);
    }
  }
  std::vector<int32_t> out(s.num_phy);
  for (size_t node = 0; node < s.num_nodes; ++node) {
    // 2. Replicas within the node.
    std::vector<float> node_weight(s.experts_per_node());
    for (size_t k = 0; k < node_weight.size(); ++k) {
      node_weight[k] =
          weight[static_cast<size_t>(node_order_to_log[node * s.experts_per_node() + k])];
    }
    const Replication rep = replicate_experts(node_weight, s.phy_per_node());
    // 3. Physical experts to the node's GPUs, each weighing its expert's load per replica.
    std::vector<float> phy_weight(s.phy_per_node());
    for (size_t phy = 0; phy < phy_weight.size(); ++phy) {
      const auto k = static_cast<size_t>(rep.phy_to_log[phy]);
      phy_weight[phy] = node_weight[k] / static_cast<float>(rep.count[k]);
    }
    const Packing gpus = balanced_packing(phy_weight, static_cast<int32_t>(s.gpus_per_node()));
    for (size_t phy = 0; phy < phy_weight.size(); ++phy) {
      const size_t slot = node * s.phy_per_node() +
                          static_cast<size_t>(gpus.pack[phy]) * s.phy_per_gpu() +
                          static_cast<size_t>(gpus.rank_in_pack[phy]);
      const size_t k = static_cast<size_t>(rep.phy_to_log[phy]);
      out[slot] = node_order_to_log[node * s.experts_per_node() + k];
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> check_config(const Config& c, int32_t num_logical_experts) {
  std::vector<std::string> problems;
  const auto positive = [&](int32_t value, const char* option) {
    if (value <= 0) problems.push_back(fmt::format("{} must be at least 1, got {}", option, value));
    return value > 0;
  };
  bool ok = positive(c.num_replicas, "--num-replicas");
  ok = positive(c.num_groups, "--num-groups") && ok;
  ok = positive(c.num_nodes, "--num-nodes") && ok;
  ok = positive(c.num_gpus, "--ep-size") && ok;
  if (!ok) return problems;
  if (c.num_replicas % c.num_gpus != 0) {
    problems.push_back(fmt::format(
        "--num-replicas {} must be a multiple of --ep-size {} (every GPU holds as many slots)",
        c.num_replicas, c.num_gpus));
  }
  if (c.num_replicas < num_logical_experts) {
    problems.push_back(fmt::format(
        "--num-replicas {} must be at least the {} logical experts of the loads (it counts every "
        "physical slot, replicas included)",
        c.num_replicas, num_logical_experts));
  }
  if (c.hierarchical()) {
    if (num_logical_experts % c.num_groups != 0) {
      problems.push_back(
          fmt::format("--num-groups {} must divide the {} logical experts of the loads (groups of "
                      "consecutive experts)",
                      c.num_groups, num_logical_experts));
    }
    if (c.num_gpus % c.num_nodes != 0) {
      problems.push_back(fmt::format(
          "--ep-size {} must be a multiple of --num-nodes {} (every node holds as many GPUs)",
          c.num_gpus, c.num_nodes));
    }
  }
  return problems;
}

placement::Placement rebalance_experts(const Loads& loads, const Config& config) {
  auto problems = check_config(config, loads.num_logical_experts);
  if (!problems.empty()) throw core::Error(core::ErrorKind::kUsage, std::move(problems));
  // Groups that do not divide by nodes: one global balance, as the reference falls back.
  const bool hier = config.hierarchical();
  const Shape shape{static_cast<size_t>(loads.num_logical_experts),
                    static_cast<size_t>(hier ? config.num_groups : 1),
                    static_cast<size_t>(hier ? config.num_nodes : 1),
                    static_cast<size_t>(config.num_gpus), static_cast<size_t>(config.num_replicas)};
  placement::Placement out;
  out.ep_size = config.num_gpus;
  out.num_slots_per_rank = config.num_replicas / config.num_gpus;
  out.num_logical_experts = loads.num_logical_experts;
  out.physical_to_logical_map.reserve(loads.per_layer.size());
  std::vector<float> weight(shape.num_experts);
  for (const auto& layer : loads.per_layer) {
    EPLB_ASSERT(layer.size() == shape.num_experts);
    std::transform(layer.begin(), layer.end(), weight.begin(),
                   [](double v) { return static_cast<float>(v); });
    out.physical_to_logical_map.push_back(balance_layer(weight, shape));
  }
  return out;
}

}  // namespace eplb::balance
