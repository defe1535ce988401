// The one timing rule of every benchmark here: runs start together, a run lasts as long as
// its slowest rank, and the median of the timed runs is reported.
#pragma once

#include <functional>

#include "eplb/runtime/mpi.hpp"

namespace eplb::bench {

// Collective over group.comm: runs `run` warmup + iterations times (iterations >= 1), each
// run started by a polled barrier; returns the median, over the timed runs, of the
// slowest rank's seconds (microsecond resolution). `run` must return once this rank's
// part is complete (synchronize its GPU work).
double median_seconds(const runtime::Group& group, int warmup, int iterations,
                      const std::function<void()>& run);

}  // namespace eplb::bench
