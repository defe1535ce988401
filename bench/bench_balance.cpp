// Balancing benchmark at DeepSeek-V3 scale (58 layers, 256 experts, 288 slots, 4 nodes,
// 32 GPUs, 8 groups): milliseconds per rebalance_experts (the reference algorithm, median of
// N runs, one core), then the traffic-aware mode against the reference when loads drift
// +-2%, +-10% and +-30% from those the old placement was balanced for: experts moved,
// balancedness, and whether ours is at least as balanced in every layer.
//
//   bench_balance [runs=11] [seed=1] [layers=58] [sigma=1]   (log-normal skew of the loads)
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "eplb/balance/balance.hpp"

namespace {

namespace balance = eplb::balance;

// Skewed per-layer token counts: log-normal (sigma 1 by default), as expert popularity roughly is.
balance::Loads skewed_loads(int32_t layers, int32_t experts, double sigma, std::mt19937_64& rng) {
  std::lognormal_distribution<double> popularity(0.0, sigma);
  balance::Loads loads{experts, {}};
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<double> layer(static_cast<size_t>(experts));
    for (double& v : layer) v = std::round(1000.0 * popularity(rng));
    loads.per_layer.push_back(std::move(layer));
  }
  return loads;
}

balance::Loads drifted(const balance::Loads& base, double drift, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> factor(1.0 - drift, 1.0 + drift);
  balance::Loads out = base;
  for (auto& layer : out.per_layer) {
    for (double& v : layer) v = std::round(v * factor(rng));
  }
  return out;
}

double mean_balancedness(const eplb::placement::Placement& p, const balance::Loads& loads) {
  double sum = 0;
  for (int32_t l = 0; l < loads.num_layers(); ++l) {
    sum += balance::balancedness(p, l, loads.per_layer[static_cast<size_t>(l)]);
  }
  return sum / loads.num_layers();
}

double pct(int64_t part, int64_t whole) {
  return 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 11;
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const int32_t layers = argc > 3 ? std::max(1, std::atoi(argv[3])) : 58;
  const double sigma = argc > 4 ? std::atof(argv[4]) : 1.0;
  const balance::Config config{288, 8, 4, 32};
  std::mt19937_64 rng(seed);
  const balance::Loads base = skewed_loads(layers, 256, sigma, rng);

  std::vector<double> ms;
  size_t sink = 0;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    sink += balance::rebalance_experts(base, config).physical_to_logical_map.size();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  if (sink == 0) std::abort();
  std::sort(ms.begin(), ms.end());
  fmt::print(
      "DeepSeek-V3 scale: {} layers x 256 experts, 288 slots, 8 groups, 4 nodes, 32 GPUs; "
      "loads log-normal, sigma {}\n",
      layers, sigma);
  fmt::print("  rebalance_experts (reference algorithm) median ms: {:.2f} ({} runs)\n",
             ms[ms.size() / 2], runs);

  const auto old_p = balance::rebalance_experts(base, config);
  const int64_t total_slots = int64_t{layers} * config.num_replicas;
  for (double drift : {0.02, 0.10, 0.30}) {
    const balance::Loads now = drifted(base, drift, rng);
    const auto ref = balance::rebalance_experts(now, config);
    balance::TrafficStats stats;
    const auto start = std::chrono::steady_clock::now();
    const auto ours = balance::rebalance_from(old_p, now, config, ref, &stats);
    const double ours_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    int worse_layers = 0;
    for (int32_t l = 0; l < layers; ++l) {
      const auto& w = now.per_layer[static_cast<size_t>(l)];
      const auto a = balance::gpu_loads(ours, l, w), b = balance::gpu_loads(ref, l, w);
      if (*std::max_element(a.begin(), a.end()) > *std::max_element(b.begin(), b.end()))
        ++worse_layers;
    }
    const int64_t ref_moved = balance::experts_moved(old_p, ref);
    const int64_t ours_moved = balance::experts_moved(old_p, ours);
    fmt::print(
        "  drift +-{:.0f}%: moved reference {} ({:.1f}% of slots), ours {} ({:.1f}%), "
        "ratio {:.3f}; balancedness reference {:.4f} ours {:.4f} (old {:.4f}); "
        "layers less balanced than the reference: {}; layers unchanged/searched/"
        "regrouped/fallback {}/{}/{}/{}; swaps {} re-points {}; {:.1f} ms\n",
        drift * 100, ref_moved, pct(ref_moved, total_slots), ours_moved,
        pct(ours_moved, total_slots),
        ref_moved ? static_cast<double>(ours_moved) / static_cast<double>(ref_moved) : 0.0,
        mean_balancedness(ref, now), mean_balancedness(ours, now), mean_balancedness(old_p, now),
        worse_layers, stats.layers_unchanged, stats.layers_searched, stats.layers_regrouped,
        stats.layers_fallback, stats.swaps, stats.repoints, ours_ms);
  }
  return 0;
}
