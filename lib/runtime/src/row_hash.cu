// core::row_hash on the device: one block per row (grid-stride), each thread adding the terms
// of its words, a block reduction. The sum is order-free, so the result is the host's.
#include <cstdint>

#include "eplb/core/row_hash.hpp"
#include "eplb/runtime/cuda.hpp"
#include "eplb/runtime/row_hash.hpp"

namespace eplb::runtime {
namespace {

constexpr int kMaxRows = 1024;
constexpr int kThreads = 256;

struct Batch {
  int num_rows;
  RowRef rows[kMaxRows];
};

__device__ uint64_t word_at(const std::byte* p, unsigned long long i, unsigned long long bytes) {
  const unsigned long long at = 8 * i;
  uint64_t w = 0;
  if (at + 8 <= bytes && (reinterpret_cast<uintptr_t>(p) & 7) == 0) {
    w = *reinterpret_cast<const uint64_t*>(p + at);
  } else {
    for (unsigned long long b = 0; b < 8 && at + b < bytes; ++b) {
      w |= static_cast<uint64_t>(static_cast<unsigned char>(p[at + b])) << (8 * b);
    }
  }
  return w;
}

__global__ void __launch_bounds__(kThreads)
    row_hash_kernel(const __grid_constant__ Batch b, uint64_t* out) {
  __shared__ uint64_t partial[kThreads];
  for (int r = blockIdx.x; r < b.num_rows; r += gridDim.x) {
    const RowRef row = b.rows[r];
    const unsigned long long words = (row.bytes + 7) / 8;
    uint64_t sum = 0;
    for (unsigned long long i = threadIdx.x; i < words; i += blockDim.x) {
      sum += core::row_hash_term(word_at(row.data, i, row.bytes), i);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s /= 2) {
      if (static_cast<int>(threadIdx.x) < s) partial[threadIdx.x] += partial[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[r] = core::row_hash_finish(partial[0], row.bytes);
    __syncthreads();
  }
}

}  // namespace

void hash_rows(const RowRef* rows, size_t num_rows, uint64_t* out, cudaStream_t stream) {
  for (size_t first = 0; first < num_rows; first += kMaxRows) {
    Batch b{};
    b.num_rows = static_cast<int>(num_rows - first < kMaxRows ? num_rows - first : kMaxRows);
    for (int i = 0; i < b.num_rows; ++i) b.rows[i] = rows[first + static_cast<size_t>(i)];
    const unsigned blocks = static_cast<unsigned>(b.num_rows < 132 ? b.num_rows : 132);
    row_hash_kernel<<<blocks, kThreads, 0, stream>>>(b, out + first);
    EPLB_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace eplb::runtime
