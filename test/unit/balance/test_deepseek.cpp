// The reference algorithm: DeepSeek's published example, the fallback, and errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "eplb/balance/balance.hpp"
#include "eplb/core/error.hpp"

namespace eplb::balance {
namespace {

Loads readme_loads() {
  return {12,
          {{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
           {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}}};
}

}  // namespace

TEST_CASE("the DeepSeek EPLB README example gives the README's output", "[balance][deepseek]") {
  // deepseek-ai/EPLB README: 12 experts, 16 replicas, 4 groups, 2 nodes, 8 GPUs.
  const auto p = rebalance_experts(readme_loads(), {16, 4, 2, 8});
  CHECK(p.ep_size == 8);
  CHECK(p.num_slots_per_rank == 2);
  CHECK(p.num_logical_experts == 12);
  CHECK(p.physical_to_logical_map ==
        std::vector<std::vector<int32_t>>{{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                          {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}});
}
}  // namespace eplb::balance

namespace eplb::balance {
namespace {

Loads random_loads(std::mt19937_64& rng, int32_t layers, int32_t experts, bool skewed,
                   double sigma = 1.2) {
  std::lognormal_distribution<double> skew(0.0, sigma);
  std::uniform_int_distribution<int> flat(0, 1000);
  Loads loads{experts, {}};
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<double> w(static_cast<size_t>(experts));
    for (double& v : w) v = skewed ? std::round(1000 * skew(rng)) : flat(rng);
    loads.per_layer.push_back(std::move(w));
  }
  return loads;
}

Loads drifted(const Loads& base, double drift, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> f(1 - drift, 1 + drift);
  Loads out = base;
  for (auto& layer : out.per_layer) {
    for (double& v : layer) v = std::round(v * f(rng));
  }
  return out;
}

double max_load(const placement::Placement& p, int32_t layer, const Loads& loads) {
  const auto g = gpu_loads(p, layer, loads.per_layer[static_cast<size_t>(layer)]);
  return *std::max_element(g.begin(), g.end());
}

void check_valid(const placement::Placement& p, const Loads& loads, const Config& c) {
  REQUIRE(p.ep_size == c.num_gpus);
  REQUIRE(p.num_slots_per_rank * c.num_gpus == c.num_replicas);
  for (const auto& layer : p.physical_to_logical_map) {
    REQUIRE(layer.size() == static_cast<size_t>(c.num_replicas));
    std::vector<int> count(static_cast<size_t>(loads.num_logical_experts), 0);
    for (int32_t e : layer) {
      REQUIRE(e >= 0);
      REQUIRE(e < loads.num_logical_experts);
      ++count[static_cast<size_t>(e)];
    }
    for (int n : count) REQUIRE(n >= 1);  // every expert keeps a replica
  }
}

}  // namespace

TEST_CASE("reference placements are valid and deterministic on random loads",
          "[balance][deepseek]") {
  std::mt19937_64 rng(11);
  const std::vector<std::pair<Config, int32_t>> configs = {
      {{288, 8, 4, 32}, 256}, {{80, 8, 2, 8}, 64}, {{48, 3, 2, 8}, 36},
      {{64, 4, 1, 8}, 48},    {{16, 2, 2, 16}, 8}, {{32, 4, 4, 8}, 24}};
  for (const auto& [c, experts] : configs) {
    const Loads loads = random_loads(rng, 3, experts, true);
    const auto p = rebalance_experts(loads, c);
    check_valid(p, loads, c);
    CHECK(rebalance_experts(loads, c) == p);
    if (c.hierarchical() && c.num_nodes > 1) {  // every replica of a group on one node
      const int32_t group_size = experts / c.num_groups;
      const int32_t slots_per_node = c.num_replicas / c.num_nodes;
      for (const auto& layer : p.physical_to_logical_map) {
        std::vector<int32_t> node(static_cast<size_t>(c.num_groups), -1);
        for (size_t slot = 0; slot < layer.size(); ++slot) {
          auto& n = node[static_cast<size_t>(layer[slot] / group_size)];
          const auto here = static_cast<int32_t>(slot) / slots_per_node;
          CHECK((n < 0 || n == here));
          n = here;
        }
      }
    }
  }
}

TEST_CASE("an all-zero layer gives a valid placement", "[balance][deepseek]") {
  const Loads loads{8, {std::vector<double>(8, 0.0)}};
  const Config c{12, 2, 2, 4};
  const auto p = rebalance_experts(loads, c);
  check_valid(p, loads, c);
  CHECK(balancedness(p, 0, loads.per_layer[0]) == 1.0);
}

TEST_CASE("bad configurations name the option and its valid range", "[balance][deepseek]") {
  const Loads loads{12, {std::vector<double>(12, 1.0)}};
  CHECK_THROWS_WITH(rebalance_experts(loads, {12, 4, 2, 8}),
                    Catch::Contains("--num-replicas 12 must be a multiple of --ep-size 8"));
  CHECK_THROWS_WITH(rebalance_experts(loads, {16, 8, 2, 8}),
                    Catch::Contains("--num-groups 8 must divide the 12 logical experts"));
  CHECK_THROWS_WITH(rebalance_experts(loads, {8, 1, 1, 8}),
                    Catch::Contains("must be at least the 12 logical experts"));
  CHECK(check_config({16, 5, 2, 8}, 12).empty());  // 5 % 2 != 0: global, 5 need not divide 12
  try {
    rebalance_experts(loads, {12, 4, 2, 8});
  } catch (const core::Error& e) {
    CHECK(e.kind() == core::ErrorKind::kUsage);
  }
}

TEST_CASE("traffic-aware: as balanced as the reference in every layer, few moves, old rows kept",
          "[balance][traffic]") {
  std::mt19937_64 rng(5);
  const std::vector<std::pair<Config, int32_t>> shapes = {
      {{288, 8, 4, 32}, 256}, {{80, 8, 2, 8}, 64}, {{48, 3, 2, 8}, 36}, {{64, 4, 1, 8}, 48}};
  for (const auto& [c, experts] : shapes) {
    for (double drift : {0.0, 0.02, 0.1, 0.3}) {
      const Loads base = random_loads(rng, 4, experts, true);
      const auto old_p = rebalance_experts(base, c);
      const Loads now = drifted(base, drift, rng);
      const auto ref = rebalance_experts(now, c);
      TrafficStats stats;
      const auto ours = rebalance_from(old_p, now, c, ref, &stats);
      check_valid(ours, now, c);
      CHECK(rebalance_from(old_p, now, c, ref) == ours);  // deterministic
      for (int32_t l = 0; l < now.num_layers(); ++l) {
        CHECK(max_load(ours, l, now) <= max_load(ref, l, now));
      }
      if (drift == 0.0) CHECK(ours == old_p);
      CHECK(experts_moved(old_p, ours) <= experts_moved(old_p, ref));
      // An expert that stays on a GPU keeps its old rows (or they keep it).
      const auto per = static_cast<size_t>(c.num_replicas / c.num_gpus);
      for (size_t l = 0; l < ours.physical_to_logical_map.size(); ++l) {
        const auto& a = old_p.physical_to_logical_map[l];
        const auto& b = ours.physical_to_logical_map[l];
        for (size_t first = 0; first < a.size(); first += per) {
          for (size_t r = 0; r < per; ++r) {
            const int32_t e = a[first + r];
            bool stays = false, all_old_kept = true, all_new_old = true;
            for (size_t q = 0; q < per; ++q) {
              stays = stays || b[first + q] == e;
              if (a[first + q] == e && b[first + q] != e) all_old_kept = false;
              if (b[first + q] == e && a[first + q] != e) all_new_old = false;
            }
            if (stays) CHECK((all_old_kept || all_new_old));
          }
        }
      }
    }
  }
}

TEST_CASE("traffic-aware: DeepSeek-V3 scale at +-10% drift moves under a tenth of the reference",
          "[balance][traffic]") {
  std::mt19937_64 rng(1);
  const Config c{288, 8, 4, 32};
  // The distribution of bench_balance and docs/PERFORMANCE.md (log-normal, sigma 1).
  const Loads base = random_loads(rng, 8, 256, true, 1.0);
  const auto old_p = rebalance_experts(base, c);
  const Loads now = drifted(base, 0.1, rng);
  const auto ref = rebalance_experts(now, c);
  const auto ours = rebalance_from(old_p, now, c, ref);
  CHECK(experts_moved(old_p, ours) * 10 <= experts_moved(old_p, ref));
}

TEST_CASE("traffic-aware: from an OLD made without groups, or shuffled at random",
          "[balance][traffic]") {
  std::mt19937_64 rng(9);
  const Config c{80, 8, 2, 8};
  for (int trial = 0; trial < 6; ++trial) {
    const Loads base = random_loads(rng, 3, 64, true);
    auto old_p = rebalance_experts(base, {80, 1, 1, 8});  // groups spread over nodes
    if (trial % 2 == 1) {
      for (auto& layer : old_p.physical_to_logical_map)
        std::shuffle(layer.begin(), layer.end(), rng);
    }
    const Loads now = drifted(base, 0.3, rng);
    const auto ref = rebalance_experts(now, c);
    const auto ours = rebalance_from(old_p, now, c, ref);
    check_valid(ours, now, c);
    for (int32_t l = 0; l < now.num_layers(); ++l) {
      CHECK(max_load(ours, l, now) <= max_load(ref, l, now));
    }
  }
}

TEST_CASE("traffic-aware: empty slots are filled, an OLD without some expert is refused",
          "[balance][traffic]") {
  const Loads loads{4, {{10, 1, 1, 1}}};
  const Config c{6, 1, 1, 2};
  const auto ref = rebalance_experts(loads, c);
  placement::Placement old_p{2, 3, 4, {{0, 1, -1, 2, 3, -1}}, {}};
  const auto ours = rebalance_from(old_p, loads, c, ref);
  check_valid(ours, loads, c);
  CHECK(max_load(ours, 0, loads) <= max_load(ref, 0, loads));
  placement::Placement lacking{2, 3, 4, {{0, 1, 1, 2, 2, 0}}, {}};
  CHECK_THROWS_WITH(
      rebalance_from(lacking, loads, c, ref),
      Catch::Contains("layer 0, logical expert 3: the old placement holds no replica"));
}

}  // namespace eplb::balance
