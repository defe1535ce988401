// Where a segment's bytes live, for the NCCL pipeline: this GPU's memory goes to the
// batched copy kernel, anything else (pinned or pageable host memory, another device)
// to the copy engines. NCCL builds only.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "eplb/transport/transport.hpp"

namespace eplb::transport::detail {

enum class MemKind { kThisDevice, kPageable, kOther };

// Classifies segment addresses, one driver query per device allocation rather than per
// segment: a rebalance has thousands of segments in a few dozen allocations, and one
// cudaPointerGetAttributes each took a measurable part of a millisecond per exchange.
class MemoryClassifier {
 public:
  explicit MemoryClassifier(int device) : device_(device) {}
  // Local.
  MemKind kind(const std::byte* p);

 private:
  struct Range {
    const std::byte* begin;
    const std::byte* end;
  };
  int device_;
  std::vector<Range> ranges_;  // device allocations of this GPU seen so far
};

// Host memory handed out while the transport is still setting up in the background, so
// that the caller can start using it (reading the first layers into it) before the CUDA
// context exists: page-aligned, and page-locked later (cudaHostRegister) by
// lock_waiting(), on the set-up's helper thread or at the latest when the transport is
// ready. Until then exchanges would see pageable memory. One process-wide table, because
// HostBuffer's release is a plain function; releasing a buffer that is being locked waits
// for that to finish.

// Local: `bytes` (> 0) of page-aligned host memory, waiting to be page-locked on `device`.
// Throws core::Error(kComm) when out of memory.
HostBuffer allocate_lockable(size_t bytes, int device);

struct LockResult {
  size_t buffers = 0;
  size_t bytes = 0;
  std::string error;  // the first failure (that buffer stays pageable); empty if none
};

// Local, any thread, with `device` current: page-locks every buffer still waiting for it.
LockResult lock_waiting(int device);

}  // namespace eplb::transport::detail
