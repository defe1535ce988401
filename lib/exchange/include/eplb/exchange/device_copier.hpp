// Local row copies on a CUDA device, for LayerExchange over device rows. NCCL builds only
// (includes cuda_runtime.h): only source files that CMake compiles when NCCL was found
// include it.
#pragma once

#include <cuda_runtime.h>

#include <chrono>

#include "eplb/exchange/copier.hpp"
#include "eplb/runtime/batched_copy.hpp"

namespace eplb::exchange {

// Copies are collected and launched by issue() as a few batched-copy kernels on `stream`
// (runtime::BatchedCopy, at most `blocks` thread blocks each, so that they leave SMs to
// NCCL next to them); zeros are cudaMemsetAsync on the same stream at once. Both pointers
// of a copy must be memory of the current device.
class DeviceCopier final : public Copier {
 public:
  // Local. `stream` must outlive the copier; `timeout` bounds finish() (zero: no limit).
  DeviceCopier(cudaStream_t stream, unsigned blocks, std::chrono::milliseconds timeout);
  void copy(std::byte* dst, const std::byte* src, size_t bytes) override;
  void zero(std::byte* dst, size_t bytes) override;
  void issue() override;
  // Local: polls the stream until its work is done; throws core::Error(kComm) on a CUDA
  // error or once the timeout passes.
  void finish() override;

 private:
  cudaStream_t stream_;
  unsigned blocks_;
  std::chrono::milliseconds timeout_;
  runtime::BatchedCopy batch_;
};

}  // namespace eplb::exchange
