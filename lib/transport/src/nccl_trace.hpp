// TransportOptions::trace_rounds: GPU timing events around each phase (gather, NCCL
// send/receive, scatter) of each round of one NCCL exchange, printed by rank 0 to show
// where the pipeline loses time. NCCL builds only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "eplb/runtime/cuda.hpp"

namespace eplb::transport::detail {

class RoundTrace {
 public:
  enum Phase { kGather = 0, kComm = 1, kScatter = 2 };
  RoundTrace() = default;  // off
  // Local: timing events for `num_rounds` rounds when `on`; off, mark() and print() do
  // nothing.
  RoundTrace(bool on, size_t num_rounds);
  // Local: records the start or end of `phase` of `round` on `stream`.
  void mark(size_t round, Phase phase, bool end, cudaStream_t stream);
  // Local, once every marked event has completed: prints the timeline to stderr, with the
  // exchange's piece cap and host set-up times.
  void print(size_t piece_cap, double setup_ms, double flows_ms) const;

 private:
  size_t num_rounds_ = 0;
  std::vector<runtime::Event> events_;  // [round][phase][start, end]
};

}  // namespace eplb::transport::detail
