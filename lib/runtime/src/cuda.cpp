#include "eplb/runtime/cuda.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <string_view>
#include <utility>

#include "call_text.hpp"
#include "eplb/core/error.hpp"

namespace eplb::runtime {
namespace {

using core::Error;
using core::ErrorKind;

using detail::base_name;
using detail::short_call;

std::string nccl_detail(ncclResult_t rc, ncclComm_t comm) {
  std::string text = ncclGetErrorString(rc);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') text += fmt::format(" ({})", last);
  return text;
}

}  // namespace

void check_cuda(cudaError_t rc, const char* call, const char* file, int line) {
  if (rc == cudaSuccess) return;
  throw Error(ErrorKind::kComm,
              fmt::format("{} failed: {}: {} at {}:{}", short_call(call), cudaGetErrorName(rc),
                          cudaGetErrorString(rc), base_name(file), line));
}

void check_nccl(ncclResult_t rc, const char* call, const char* file, int line) {
  if (rc == ncclSuccess || rc == ncclInProgress) return;
  throw Error(ErrorKind::kComm, fmt::format("{} failed: {} at {}:{}", short_call(call),
                                            nccl_detail(rc, nullptr), base_name(file), line));
}

int choose_device(int node_rank) {
  int num_devices = 0;
  cudaError_t rc = cudaGetDeviceCount(&num_devices);
  if (rc != cudaSuccess || num_devices == 0) {
    throw Error(ErrorKind::kComm,
                fmt::format("no usable CUDA device: {}",
                            rc == cudaSuccess ? "none found" : cudaGetErrorString(rc)));
  }
  // NOTE: the same rule as transport::gpu_for, which rank 0's GPU summary reports.
  return num_devices == 1 ? 0 : node_rank % num_devices;
}

int select_device(int node_rank) {
  const int device = choose_device(node_rank);
  EPLB_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

// ---- buffers, streams, events -------------------------------------------------------------

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  EPLB_CUDA_CHECK(cudaMalloc(&p, bytes));
  memory_.reset({static_cast<std::byte*>(p), bytes, false});
}

DeviceBuffer DeviceBuffer::for_nccl(size_t bytes) {
  DeviceBuffer buffer;
  void* p = nullptr;
  if (bytes == 0 || ncclMemAlloc(&p, bytes) != ncclSuccess) return buffer;
  buffer.memory_.reset({static_cast<std::byte*>(p), bytes, true});
  return buffer;
}

void DeviceBuffer::Traits::close(Memory memory) noexcept {
  if (memory.data == nullptr) return;
  if (memory.nccl) {
    ncclMemFree(memory.data);
  } else {
    cudaFree(memory.data);
  }
}

PinnedBuffer::PinnedBuffer(size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  EPLB_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
  memory_.reset({static_cast<std::byte*>(p), bytes});
}

void PinnedBuffer::free_pinned(std::byte* data) noexcept {
  if (data != nullptr) cudaFreeHost(data);
}

Stream::Stream() {
  cudaStream_t stream = nullptr;
  EPLB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_.reset(stream);
}

Stream Stream::with_priority(int level) {
  int least = 0, greatest = 0;
  EPLB_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // CUDA counts down: `greatest` is numerically the smallest.
  const int priority = std::max(greatest, least - level);
  cudaStream_t stream = nullptr;
  EPLB_CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, priority));
  return Stream(stream);
}

void Stream::Traits::close(cudaStream_t stream) noexcept { cudaStreamDestroy(stream); }

Event::Event(bool timing) {
  cudaEvent_t event = nullptr;
  EPLB_CUDA_CHECK(
      cudaEventCreateWithFlags(&event, timing ? cudaEventDefault : cudaEventDisableTiming));
  event_.reset(event);
}

void Event::Traits::close(cudaEvent_t event) noexcept { cudaEventDestroy(event); }

void Event::record(cudaStream_t stream) { EPLB_CUDA_CHECK(cudaEventRecord(get(), stream)); }

bool Event::done() const {
  cudaError_t rc = cudaEventQuery(get());
  if (rc == cudaErrorNotReady) return false;
  EPLB_CUDA_CHECK(rc);
  return true;
}

// ---- NCCL communicator ----------------------------------------------------------------------

NcclComm NcclComm::borrow(ncclComm_t comm) {
  NcclComm borrowed(comm);
  borrowed.owned_ = false;
  return borrowed;
}

NcclComm NcclComm::start(const NcclBootstrap& boot) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once, so every wait can have a deadline
  ncclComm_t raw = nullptr;
  ncclUniqueId id = boot.id;
  ncclResult_t rc = ncclCommInitRankConfig(&raw, boot.size, id, boot.rank, &config);
  NcclComm comm(raw);  // owned from here: a failure below aborts it
  EPLB_NCCL_CHECK(rc);
  return comm;
}

void NcclComm::Traits::close(ncclComm_t comm) noexcept { ncclCommAbort(comm); }

ncclResult_t NcclComm::async_error() const {
  ncclResult_t state = ncclSuccess;
  ncclResult_t rc = ncclCommGetAsyncError(get(), &state);
  return rc == ncclSuccess ? state : rc;
}

void NcclComm::wait_ready(const char* what, const Deadline& deadline,
                          const std::atomic<bool>* cancel) {
  const bool ready = poll_until(
      [&] {
        if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
          abort();
          throw Error(ErrorKind::kComm, fmt::format("NCCL {} cancelled", what));
        }
        ncclResult_t state = async_error();
        if (state != ncclSuccess && state != ncclInProgress) {
          std::string detail = nccl_detail(state, get());
          abort();
          throw Error(ErrorKind::kComm, fmt::format("NCCL {} failed: {}", what, detail));
        }
        return state == ncclSuccess;
      },
      deadline);
  if (!ready) {
    abort();
    throw Error(ErrorKind::kComm, fmt::format("NCCL {} timed out after {} (NCCL does not say "
                                              "which peer it waits for)",
                                              what, deadline.timeout_text()));
  }
}

void NcclComm::group_end(const char* what, const Deadline& deadline) {
  ncclResult_t rc = ncclGroupEnd();
  if (rc != ncclSuccess && rc != ncclInProgress) {
    std::string detail = nccl_detail(rc, get());
    abort();
    throw Error(ErrorKind::kComm, fmt::format("NCCL {}: ncclGroupEnd failed: {}", what, detail));
  }
  wait_ready(what, deadline);
}

void NcclComm::close(const Deadline& deadline) {
  if (!comm_) return;
  if (!owned_) {  // the caller's: it stays open for its owner
    static_cast<void>(comm_.release());
    return;
  }
  ncclResult_t rc = ncclCommFinalize(get());
  if (rc != ncclSuccess && rc != ncclInProgress) {
    std::string detail = nccl_detail(rc, get());
    abort();
    throw Error(ErrorKind::kComm, fmt::format("ncclCommFinalize(...) failed: {}", detail));
  }
  wait_ready("ncclCommFinalize", deadline);
  // After a completed finalize, destroy only frees local resources.
  rc = ncclCommDestroy(comm_.release());
  if (rc != ncclSuccess && rc != ncclInProgress) {
    throw Error(ErrorKind::kComm,
                fmt::format("ncclCommDestroy(...) failed: {}", nccl_detail(rc, nullptr)));
  }
}

NcclRegistration::NcclRegistration(NcclComm& comm, void* data, size_t bytes,
                                   const Deadline& deadline) {
  void* handle = nullptr;
  EPLB_NCCL_CHECK(ncclCommRegister(comm.get(), data, bytes, &handle));
  // NOTE: owned only once NCCL has finished it, as before the owner template: a failed wait
  // has aborted the communicator (which drops the registration), and an interrupted one
  // must not deregister while NCCL is still registering.
  comm.wait_ready("ncclCommRegister", deadline);
  registration_.reset({&comm, handle});
}

void NcclRegistration::Traits::close(Registered registered) noexcept {
  if (registered.handle != nullptr && registered.comm != nullptr &&
      registered.comm->get() != nullptr) {
    ncclCommDeregister(registered.comm->get(), registered.handle);
  }
}

}  // namespace eplb::runtime
