// Where a segment's bytes live, for the NCCL pipeline: this GPU's memory goes to the
// batched copy kernel, anything else (pinned or pageable host memory, another device)
// to the copy engines. NCCL builds only.
#pragma once

#include <cstddef>
#include <vector>

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

}  // namespace eplb::transport::detail
