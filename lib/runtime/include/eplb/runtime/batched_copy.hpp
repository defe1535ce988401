// Device-to-device copies collected on the host and issued as a few kernel launches.
//
// Why: the NCCL pipeline gathers and scatters every expert tensor row of every message;
// one cudaMemcpyAsync each costs microseconds of host time per call, and with thousands of
// small rows (FP8 block scales) the host, not the GPU, set the pace. One launch copies
// hundreds of rows. NCCL-enabled builds only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

namespace eplb::runtime {

class BatchedCopy {
 public:
  // Local: records one copy; both pointers must be device memory of the current device.
  void add(std::byte* dst, const std::byte* src, size_t bytes);
  // Local: enqueues every recorded copy on `stream` (in launches of at most 512 copies)
  // and forgets them. Copies within one flush must not overlap each other. The kernel
  // uses at most `blocks` thread blocks (0: max_blocks()), leaving the other SMs to NCCL.
  void flush(cudaStream_t stream, unsigned blocks = 0);
  // EPLB_COPY_BLOCKS from the environment, else 64: on two H200s 16 and 32 blocks left
  // the copies setting the pace, 128 to 528 took SMs from NCCL, and the copy engines
  // (cudaMemcpyBatchAsync) were slower still (docs/PERFORMANCE.md).
  static unsigned max_blocks();
  bool empty() const { return ops_.empty(); }

  struct Op {
    const std::byte* src;
    std::byte* dst;
    unsigned long long bytes;
  };

 private:
  std::vector<Op> ops_;
};

}  // namespace eplb::runtime
