// The GPU exchange benchmark: weights resident on the GPUs, no disk. In one run, on the
// same GPUs and the same placements, it times (a) our exchange (the planner's packed
// messages through the NCCL transport), (b) raw NCCL grouped send/recv of exactly the same
// per-peer volumes from contiguous buffers (the ceiling), and (c) the vLLM pattern: one
// NCCL send/recv per expert tensor, vLLM's sender pairing, a one-layer staging buffer and
// the copies in and out of it. (a) and (c) are checked byte for byte after their first run.
// (a) is also timed without its local row copies, to separate network and local work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eplb/io/tensor.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::bench {

struct BenchOptions {
  std::string model_name = "custom";
  std::vector<io::TensorSpec> tensors;
  int32_t num_logical_experts = 0;
  int32_t num_redundant_experts = 0;
  int32_t num_layers = 2;  // layers resident per GPU
  int32_t iterations = 5;  // timed runs per method (median reported)
  int32_t warmup = 1;
  uint64_t seed = 1;
  size_t max_staging_bytes = size_t{2} << 30;
  bool trace = false;  // rank 0 prints the timeline of our exchange's rounds
};

struct MethodResult {
  std::string name;
  double seconds = 0;           // median over iterations of the slowest rank's time
  long long busiest_bytes = 0;  // max over ranks of max(bytes sent, bytes received)
  long long messages = 0;       // NCCL send operations, all ranks
  double gbps() const {
    return seconds > 0 ? static_cast<double>(busiest_bytes) / seconds / 1e9 : 0;
  }
  long long extra_device_bytes = 0;  // buffers this method needs beyond the weights
  bool verified = false;             // output checked byte for byte
};

struct BenchResult {
  int32_t ep_size = 0;
  int32_t num_slots_per_rank = 0;
  long long expert_bytes = 0;
  long long experts_moved = 0;           // per run, all ranks
  long long weights_device_bytes = 0;    // per GPU, old + new weights
  long long peak_device_used_bytes = 0;  // max over ranks (cudaMemGetInfo)
  std::vector<MethodResult> methods;     // ours, raw, vllm, ours without local row copies
};

// Collective: every process takes one GPU (node-local rank); every wait is bounded by
// session.timeout(). Throws core::Error(kUsage)
// when the build has no NCCL backend or a process has no usable GPU.
BenchResult run_exchange_bench(const runtime::MpiSession& session, const BenchOptions& options);

}  // namespace eplb::bench
