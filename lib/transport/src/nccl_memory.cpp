#include "nccl_memory.hpp"

#include <cuda.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>

#include "eplb/core/error.hpp"

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

namespace {

struct Lockable {
  size_t bytes = 0;
  int device = 0;
  enum State { kWaiting, kLocking, kLocked, kFailed } state = kWaiting;
};

struct LockTable {
  std::mutex mutex;
  std::condition_variable changed;  // an entry left kLocking
  std::map<std::byte*, Lockable> entries;
};

LockTable& lock_table() {
  static LockTable table;
  return table;
}

void release_lockable(std::byte* data) noexcept {
  LockTable& t = lock_table();
  std::unique_lock lock(t.mutex);
  t.changed.wait(lock, [&] {
    auto it = t.entries.find(data);
    return it == t.entries.end() || it->second.state != Lockable::kLocking;
  });
  auto it = t.entries.find(data);
  if (it == t.entries.end()) return;  // not ours: never happens
  const Lockable entry = it->second;
  t.entries.erase(it);
  lock.unlock();
  if (entry.state == Lockable::kLocked) {
    (void)cudaSetDevice(entry.device);
    (void)cudaHostUnregister(data);
  }
  std::free(data);
}

}  // namespace

HostBuffer allocate_lockable(size_t bytes, int device) {
  constexpr size_t kPage = 4096;
  const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
  auto* data = static_cast<std::byte*>(std::aligned_alloc(kPage, rounded));
  if (data == nullptr) {
    throw core::Error(core::ErrorKind::kComm,
                      fmt::format("cannot allocate {} bytes of host memory for the NCCL "
                                  "transport",
                                  bytes));
  }
  LockTable& t = lock_table();
  {
    std::lock_guard lock(t.mutex);
    t.entries[data] = Lockable{rounded, device};
  }
  return HostBuffer(data, bytes, &release_lockable);
}

LockResult lock_waiting(int device) {
  LockResult result;
  LockTable& t = lock_table();
  for (;;) {
    std::byte* data = nullptr;
    size_t bytes = 0;
    {
      std::lock_guard lock(t.mutex);
      for (auto& [p, entry] : t.entries) {
        if (entry.device != device || entry.state != Lockable::kWaiting) continue;
        entry.state = Lockable::kLocking;
        data = p;
        bytes = entry.bytes;
        break;
      }
    }
    if (data == nullptr) return result;
    const cudaError_t rc = cudaHostRegister(data, bytes, cudaHostRegisterPortable);
    if (rc == cudaSuccess) {
      ++result.buffers;
      result.bytes += bytes;
    } else {
      (void)cudaGetLastError();
      if (result.error.empty()) {
        result.error = fmt::format("cudaHostRegister of {} bytes failed: {}: {}", bytes,
                                   cudaGetErrorName(rc), cudaGetErrorString(rc));
      }
    }
    {
      std::lock_guard lock(t.mutex);
      t.entries[data].state = rc == cudaSuccess ? Lockable::kLocked : Lockable::kFailed;
    }
    t.changed.notify_all();
  }
}

}  // namespace eplb::transport::detail
