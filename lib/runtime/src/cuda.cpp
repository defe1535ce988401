#include "eplb/runtime/cuda.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <string_view>
#include <utility>

#include "call_text.hpp"
#include "eplb/core/error.hpp"
#include "eplb/runtime/mpi.hpp"

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

int select_device(int node_rank) {
  int num_devices = 0;
  cudaError_t rc = cudaGetDeviceCount(&num_devices);
  if (rc != cudaSuccess || num_devices == 0) {
    throw Error(ErrorKind::kComm,
                fmt::format("no usable CUDA device: {}",
                            rc == cudaSuccess ? "none found" : cudaGetErrorString(rc)));
  }
  // NOTE: the same rule as transport::gpu_for, which rank 0's GPU summary reports.
  int device = num_devices == 1 ? 0 : node_rank % num_devices;
  EPLB_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

// ---- buffers, streams, events -------------------------------------------------------------

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  EPLB_CUDA_CHECK(cudaMalloc(&p, bytes));
  data_ = static_cast<std::byte*>(p);
}

DeviceBuffer DeviceBuffer::for_nccl(size_t bytes) {
  DeviceBuffer buffer;
  void* p = nullptr;
  if (bytes == 0 || ncclMemAlloc(&p, bytes) != ncclSuccess) return buffer;
  buffer.data_ = static_cast<std::byte*>(p);
  buffer.bytes_ = bytes;
  buffer.nccl_ = true;
  return buffer;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    nccl_ = std::exchange(o.nccl_, false);
  }
  return *this;
}

void DeviceBuffer::reset() noexcept {
  if (data_ != nullptr) {
    if (nccl_) {
      ncclMemFree(data_);
    } else {
      cudaFree(data_);
    }
  }
  data_ = nullptr;
  bytes_ = 0;
  nccl_ = false;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  EPLB_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
  data_ = static_cast<std::byte*>(p);
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

std::byte* PinnedBuffer::release() noexcept {
  bytes_ = 0;
  return std::exchange(data_, nullptr);
}

void PinnedBuffer::free_pinned(std::byte* data) noexcept {
  if (data != nullptr) cudaFreeHost(data);
}

void PinnedBuffer::reset() noexcept {
  free_pinned(data_);
  data_ = nullptr;
  bytes_ = 0;
}

Stream::Stream() { EPLB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }

Stream Stream::with_priority(int level) {
  int least = 0, greatest = 0;
  EPLB_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // CUDA counts down: `greatest` is numerically the smallest.
  const int priority = std::max(greatest, least - level);
  cudaStream_t stream = nullptr;
  EPLB_CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, priority));
  return Stream(stream);
}

Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}

Event::Event(bool timing) {
  EPLB_CUDA_CHECK(
      cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (event_ != nullptr) cudaEventDestroy(event_);
    event_ = std::exchange(o.event_, nullptr);
  }
  return *this;
}

void Event::record(cudaStream_t stream) { EPLB_CUDA_CHECK(cudaEventRecord(event_, stream)); }

bool Event::done() const {
  cudaError_t rc = cudaEventQuery(event_);
  if (rc == cudaErrorNotReady) return false;
  EPLB_CUDA_CHECK(rc);
  return true;
}

// ---- NCCL communicator ----------------------------------------------------------------------

NcclComm NcclComm::create(const Group& group) {
  int rank = 0, size = 1;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(group.comm, &size));
  // NOTE: rank 0 broadcasts a success flag with the id, so that a failure there ends
  // every rank's setup instead of leaving them waiting in the broadcast or in init.
  struct {
    int ok = 0;
    ncclUniqueId id{};
  } root;
  if (rank == 0) root.ok = ncclGetUniqueId(&root.id) == ncclSuccess ? 1 : 0;
  broadcast_bytes(group, std::as_writable_bytes(std::span(&root, 1)),
                  "NCCL communicator set-up (unique id)");
  if (!root.ok) {
    throw Error(ErrorKind::kComm,
                "ncclGetUniqueId(...) failed on rank 0: cannot create the "
                "NCCL communicator");
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once, so every wait can have a deadline
  ncclComm_t raw = nullptr;
  ncclResult_t rc = ncclCommInitRankConfig(&raw, size, root.id, rank, &config);
  NcclComm comm(raw);  // owned from here: a failure below aborts it
  EPLB_NCCL_CHECK(rc);
  comm.wait_ready("ncclCommInitRankConfig", Deadline(group.timeout));
  return comm;
}

NcclComm& NcclComm::operator=(NcclComm&& o) noexcept {
  if (this != &o) {
    abort();
    comm_ = std::exchange(o.comm_, nullptr);
  }
  return *this;
}

ncclResult_t NcclComm::async_error() const {
  ncclResult_t state = ncclSuccess;
  ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
  return rc == ncclSuccess ? state : rc;
}

void NcclComm::wait_ready(const char* what, const Deadline& deadline) {
  const bool ready = poll_until(
      [&] {
        ncclResult_t state = async_error();
        if (state != ncclSuccess && state != ncclInProgress) {
          std::string detail = nccl_detail(state, comm_);
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
    std::string detail = nccl_detail(rc, comm_);
    abort();
    throw Error(ErrorKind::kComm, fmt::format("NCCL {}: ncclGroupEnd failed: {}", what, detail));
  }
  wait_ready(what, deadline);
}

void NcclComm::abort() noexcept {
  if (comm_ == nullptr) return;
  ncclCommAbort(comm_);
  comm_ = nullptr;
}

void NcclComm::close(const Deadline& deadline) {
  if (comm_ == nullptr) return;
  ncclResult_t rc = ncclCommFinalize(comm_);
  if (rc != ncclSuccess && rc != ncclInProgress) {
    std::string detail = nccl_detail(rc, comm_);
    abort();
    throw Error(ErrorKind::kComm, fmt::format("ncclCommFinalize(...) failed: {}", detail));
  }
  wait_ready("ncclCommFinalize", deadline);
  // After a completed finalize, destroy only frees local resources.
  rc = ncclCommDestroy(std::exchange(comm_, nullptr));
  if (rc != ncclSuccess && rc != ncclInProgress) {
    throw Error(ErrorKind::kComm,
                fmt::format("ncclCommDestroy(...) failed: {}", nccl_detail(rc, nullptr)));
  }
}

NcclRegistration::NcclRegistration(NcclComm& comm, void* data, size_t bytes,
                                   const Deadline& deadline)
    : comm_(&comm) {
  EPLB_NCCL_CHECK(ncclCommRegister(comm.get(), data, bytes, &handle_));
  comm.wait_ready("ncclCommRegister", deadline);
}

NcclRegistration& NcclRegistration::operator=(NcclRegistration&& o) noexcept {
  if (this != &o) {
    reset();
    comm_ = std::exchange(o.comm_, nullptr);
    handle_ = std::exchange(o.handle_, nullptr);
  }
  return *this;
}

void NcclRegistration::reset() noexcept {
  if (handle_ != nullptr && comm_ != nullptr && comm_->get() != nullptr) {
    ncclCommDeregister(comm_->get(), handle_);
  }
  comm_ = nullptr;
  handle_ = nullptr;
}

}  // namespace eplb::runtime
