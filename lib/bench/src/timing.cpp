#include "eplb/bench/timing.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "eplb/core/clock.hpp"
#include "eplb/core/error.hpp"

namespace eplb::bench {

double median_seconds(const runtime::Group& group, int warmup, int iterations,
                      const std::function<void()>& run) {
  EPLB_ASSERT(iterations >= 1 && warmup >= 0);
  std::vector<double> times;
  for (int i = 0; i < warmup + iterations; ++i) {
    runtime::barrier(group, "bench: the start of a timed run");
    const auto start = core::Clock::now();
    run();
    long long us =
        std::chrono::duration_cast<std::chrono::microseconds>(core::Clock::now() - start).count();
    us = runtime::all_max(group, {us}, "bench: the slowest rank's time")[0];
    if (i >= warmup) times.push_back(static_cast<double>(us) / 1e6);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace eplb::bench
