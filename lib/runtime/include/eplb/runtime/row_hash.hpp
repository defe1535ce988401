// core::row_hash on the GPU: every row of a batch hashed by one kernel launch. NCCL builds
// only (includes cuda_runtime.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace eplb::runtime {

struct RowRef {
  const std::byte* data;  // device memory of the current device
  unsigned long long bytes;
};

// Local: enqueues on `stream` the core::row_hash of rows[0, num_rows) into out[i] (device
// memory of num_rows words). Same values as the host's, bit for bit. (C++17: nvcc's too.)
void hash_rows(const RowRef* rows, size_t num_rows, uint64_t* out, cudaStream_t stream);

}  // namespace eplb::runtime
