#include "eplb/exchange/device_copier.hpp"

#include <fmt/format.h>

#include "eplb/core/error.hpp"
#include "eplb/runtime/cuda.hpp"
#include "eplb/runtime/deadline.hpp"

namespace eplb::exchange {

DeviceCopier::DeviceCopier(cudaStream_t stream, unsigned blocks, std::chrono::milliseconds timeout)
    : stream_(stream), blocks_(blocks), timeout_(timeout) {}

void DeviceCopier::copy(std::byte* dst, const std::byte* src, size_t bytes) {
  batch_.add(dst, src, bytes);
}

void DeviceCopier::zero(std::byte* dst, size_t bytes) {
  EPLB_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
}

void DeviceCopier::issue() {
  if (!batch_.empty()) batch_.flush(stream_, blocks_);
}

void DeviceCopier::finish() {
  issue();
  const runtime::Deadline deadline(timeout_);
  const bool done = runtime::poll_until(
      [&] {
        const cudaError_t rc = cudaStreamQuery(stream_);
        if (rc == cudaSuccess) return true;
        if (rc != cudaErrorNotReady)
          runtime::check_cuda(rc, "local row copies", __FILE__, __LINE__);
        return false;
      },
      deadline);
  if (!done) {
    throw core::Error(core::ErrorKind::kComm,
                      fmt::format("local row copies on the GPU did not finish within {}",
                                  deadline.timeout_text()));
  }
}

}  // namespace eplb::exchange
