#include <cstdint>
#include <cstdlib>

#include "eplb/runtime/batched_copy.hpp"
#include "eplb/runtime/cuda.hpp"

namespace eplb::runtime {
namespace {

constexpr int kMaxOps = 512;
constexpr unsigned long long kTile = 64 * 1024;  // bytes one block copies at a time
constexpr int kThreads = 512;

// Passed by value (kernel parameter space, < 32 KiB): no descriptor upload to manage.
struct Batch {
  int num_ops;
  unsigned long long tile_start[kMaxOps + 1];  // prefix sums of tiles per op
  BatchedCopy::Op ops[kMaxOps];
};

__device__ void copy_tile(const std::byte* __restrict__ src, std::byte* __restrict__ dst,
                          unsigned long long n) {
  if (((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst)) & 15) == 0) {
    const auto* s = reinterpret_cast<const uint4*>(src);
    auto* d = reinterpret_cast<uint4*>(dst);
    const unsigned long long words = n / 16;
    // Four independent 16-byte loads in flight per thread before their stores.
    constexpr unsigned kUnroll = 4;
    const unsigned long long stride = blockDim.x * kUnroll;
    unsigned long long i = threadIdx.x;
    for (; i + (kUnroll - 1) * blockDim.x < words; i += stride) {
      uint4 v[kUnroll];
#pragma unroll
      for (unsigned u = 0; u < kUnroll; ++u) v[u] = s[i + u * blockDim.x];
#pragma unroll
      for (unsigned u = 0; u < kUnroll; ++u) d[i + u * blockDim.x] = v[u];
    }
    for (; i < words; i += blockDim.x) d[i] = s[i];
    for (unsigned long long j = words * 16 + threadIdx.x; j < n; j += blockDim.x) dst[j] = src[j];
  } else {
    for (unsigned long long j = threadIdx.x; j < n; j += blockDim.x) dst[j] = src[j];
  }
}

__global__ void __launch_bounds__(kThreads) batched_copy_kernel(const __grid_constant__ Batch b) {
  const unsigned long long num_tiles = b.tile_start[b.num_ops];
  for (unsigned long long tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    int lo = 0, hi = b.num_ops - 1;  // the op holding this tile: last with tile_start <= tile
    while (lo < hi) {
      int mid = (lo + hi + 1) / 2;
      if (b.tile_start[mid] <= tile)
        lo = mid;
      else
        hi = mid - 1;
    }
    const BatchedCopy::Op& op = b.ops[lo];
    const unsigned long long offset = (tile - b.tile_start[lo]) * kTile;
    const unsigned long long n = op.bytes - offset < kTile ? op.bytes - offset : kTile;
    copy_tile(op.src + offset, op.dst + offset, n);
  }
}

}  // namespace

unsigned BatchedCopy::max_blocks() {
  static const unsigned blocks = [] {
    const char* text = std::getenv("EPLB_COPY_BLOCKS");
    long value = text != nullptr ? std::strtol(text, nullptr, 10) : 0;
    return value > 0 ? static_cast<unsigned>(value) : 64u;
  }();
  return blocks;
}

void BatchedCopy::add(std::byte* dst, const std::byte* src, size_t bytes) {
  if (bytes > 0) ops_.push_back({src, dst, bytes});
}

void BatchedCopy::flush(cudaStream_t stream, unsigned blocks_limit) {
  if (blocks_limit == 0) blocks_limit = max_blocks();
  for (size_t first = 0; first < ops_.size(); first += kMaxOps) {
    Batch batch{};
    const size_t num_ops = std::min<size_t>(kMaxOps, ops_.size() - first);
    batch.num_ops = static_cast<int>(num_ops);  // at most kMaxOps
    for (size_t i = 0; i < num_ops; ++i) {
      batch.ops[i] = ops_[first + i];
      batch.tile_start[i + 1] = batch.tile_start[i] + (batch.ops[i].bytes + kTile - 1) / kTile;
    }
    const unsigned long long tiles = batch.tile_start[batch.num_ops];
    const unsigned blocks = tiles < blocks_limit ? static_cast<unsigned>(tiles) : blocks_limit;
    batched_copy_kernel<<<blocks, kThreads, 0, stream>>>(batch);
    EPLB_CUDA_CHECK(cudaGetLastError());
  }
  ops_.clear();
}

}  // namespace eplb::runtime
