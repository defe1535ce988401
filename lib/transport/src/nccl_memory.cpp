#include "nccl_memory.hpp"

#include <cuda.h>
#include <cuda_runtime.h>

namespace eplb::transport::detail {
namespace {

MemKind query_kind(const void* data, int device) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, data) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the (non-sticky) error so no later check reports it
    return MemKind::kPageable;
  }
  if (attr.type == cudaMemoryTypeDevice && attr.device == device) return MemKind::kThisDevice;
  if (attr.type == cudaMemoryTypeUnregistered) return MemKind::kPageable;
  return MemKind::kOther;
}

// The driver's cuPointerGetAttribute, reached through the runtime (the binary does not
// link libcuda, so that it starts on machines without a GPU driver); nullptr if missing.
using PointerGetAttribute = CUresult (*)(void*, CUpointer_attribute, CUdeviceptr);
PointerGetAttribute pointer_get_attribute() {
  static const PointerGetAttribute fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuPointerGetAttribute", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return PointerGetAttribute{nullptr};
    }
    return reinterpret_cast<PointerGetAttribute>(f);
  }();
  return fn;
}

}  // namespace

MemKind MemoryClassifier::kind(const std::byte* p) {
  for (const auto& r : ranges_) {
    if (p >= r.begin && p < r.end) return MemKind::kThisDevice;
  }
  MemKind k = query_kind(p, device_);
  CUdeviceptr start = 0;
  size_t size = 0;
  auto get = pointer_get_attribute();
  if (k == MemKind::kThisDevice && get != nullptr &&
      get(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, reinterpret_cast<CUdeviceptr>(p)) ==
          CUDA_SUCCESS &&
      get(&size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, reinterpret_cast<CUdeviceptr>(p)) ==
          CUDA_SUCCESS) {
    const auto* begin = reinterpret_cast<const std::byte*>(start);
    ranges_.push_back({begin, begin + size});
  }
  return k;
}

}  // namespace eplb::transport::detail
