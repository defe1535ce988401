// CUDA and NCCL handles with RAII and typed errors. Only for builds with the NCCL backend:
// only source files that CMake compiles when NCCL was found include it (the NCCL backend,
// lib/bench, bench_p2p), which keeps cuda_runtime.h and nccl.h out of every other
// translation unit.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstddef>
#include <utility>

#include "eplb/core/unique_handle.hpp"
#include "eplb/runtime/deadline.hpp"

namespace eplb::runtime {

// Throws core::Error(kComm) naming the call, the CUDA error name and string, file and line.
void check_cuda(cudaError_t rc, const char* call, const char* file, int line);
// Throws core::Error(kComm) naming the call, the NCCL error string, NCCL's last error text,
// file and line. ncclInProgress is not an error: a non-blocking communicator returns it
// while it finishes the call in the background; the caller then polls
// NcclComm::wait_ready.
void check_nccl(ncclResult_t rc, const char* call, const char* file, int line);
#define EPLB_CUDA_CHECK(call) ::eplb::runtime::check_cuda((call), #call, __FILE__, __LINE__)
#define EPLB_NCCL_CHECK(call) ::eplb::runtime::check_nccl((call), #call, __FILE__, __LINE__)

// Local: the launcher's device for this process, without making it current (no CUDA
// context is created): the only visible device, else device (node_rank % visible
// devices). Throws core::Error(kComm) when no device is usable.
int choose_device(int node_rank);
// Local: choose_device(), made current for the calling thread (which creates the CUDA
// context if this process has none on it yet).
int select_device(int node_rank);

// Move-only owner of device memory on the device current at construction (cudaMalloc,
// or ncclMemAlloc for memory that NCCL may register).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Local. Throws core::Error(kComm) when the allocation fails.
  explicit DeviceBuffer(size_t bytes);
  // Local: ncclMemAlloc'd memory, which NcclRegistration can register. Returns an empty
  // buffer (no throw) when NCCL cannot allocate it, e.g. without CUDA VMM support.
  static DeviceBuffer for_nccl(size_t bytes);
  std::byte* data() const { return memory_.get().data; }
  size_t size() const { return memory_.get().bytes; }
  bool from_nccl() const { return memory_.get().nccl; }

 private:
  struct Memory {
    std::byte* data = nullptr;
    size_t bytes = 0;
    bool nccl = false;  // freed with ncclMemFree
    bool operator==(const Memory& o) const {
      return data == o.data && bytes == o.bytes && nccl == o.nccl;
    }
  };
  struct Traits {
    static Memory null() noexcept { return {}; }
    static void close(Memory memory) noexcept;
  };
  core::UniqueHandle<Memory, Traits> memory_;
};

// Move-only owner of page-locked host memory (cudaHostAlloc, portable across devices).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // Local. Throws core::Error(kComm) when the allocation fails.
  explicit PinnedBuffer(size_t bytes);
  std::byte* data() const { return memory_.get().data; }
  size_t size() const { return memory_.get().bytes; }
  // Gives up ownership; the caller frees the memory with free_pinned().
  std::byte* release() noexcept { return memory_.release().data; }
  static void free_pinned(std::byte* data) noexcept;

 private:
  struct Memory {
    std::byte* data = nullptr;
    size_t bytes = 0;
    bool operator==(const Memory& o) const { return data == o.data && bytes == o.bytes; }
  };
  struct Traits {
    static Memory null() noexcept { return {}; }
    static void close(Memory memory) noexcept { free_pinned(memory.data); }
  };
  core::UniqueHandle<Memory, Traits> memory_;
};

// Move-only owner of a non-blocking stream (no implicit sync with the legacy stream).
class Stream {
 public:
  // Local: creates a stream on the current device.
  Stream();
  // Local: a stream whose kernels the GPU schedules before those of lower-priority
  // streams. `level` 0 is the default (lowest) priority; higher levels are clamped to the
  // device's range (cudaDeviceGetStreamPriorityRange).
  static Stream with_priority(int level);
  cudaStream_t get() const { return stream_.get(); }

 private:
  struct Traits {
    static cudaStream_t null() noexcept { return nullptr; }
    static void close(cudaStream_t stream) noexcept;
  };
  explicit Stream(cudaStream_t stream) : stream_(stream) {}
  core::UniqueHandle<cudaStream_t, Traits> stream_;
};

// Move-only owner of an event; without timing unless asked (cheaper to record and wait on).
class Event {
 public:
  // Local: creates an event on the current device.
  Event() : Event(false) {}
  explicit Event(bool timing);
  cudaEvent_t get() const { return event_.get(); }
  // Local: enqueues the event on `stream`.
  void record(cudaStream_t stream);
  // Local: true once the work before the last record() is done; throws on a CUDA error.
  bool done() const;

 private:
  struct Traits {
    static cudaEvent_t null() noexcept { return nullptr; }
    static void close(cudaEvent_t event) noexcept;
  };
  core::UniqueHandle<cudaEvent_t, Traits> event_;
};

// What every process needs to join one NCCL communicator: rank 0's unique id and the
// process's place in it.
struct NcclBootstrap {
  ncclUniqueId id{};
  int rank = 0;
  int size = 1;
};

// Owner of an NCCL communicator: one of its own (non-blocking), or the caller's, borrowed.
// NOTE: teardown of its own is collective on the success path (close() on every rank); a
// destructor that finds it still open aborts it, so a failing rank never blocks in a
// teardown that its peers will not join. A borrowed communicator is never destroyed: close()
// and the destructor leave it to its owner; only abort() (after a failure) aborts it.
class NcclComm {
 public:
  NcclComm() = default;
  ~NcclComm() {
    if (!owned_) static_cast<void>(comm_.release());
  }
  NcclComm(NcclComm&& other) noexcept
      : comm_(std::move(other.comm_)), owned_(std::exchange(other.owned_, true)) {}
  NcclComm& operator=(NcclComm&& other) noexcept {
    if (this != &other) {
      if (!owned_) static_cast<void>(comm_.release());
      comm_ = std::move(other.comm_);
      owned_ = std::exchange(other.owned_, true);
    }
    return *this;
  }
  // Local: the caller's communicator, which must outlive this object (or be aborted by it).
  static NcclComm borrow(ncclComm_t comm);
  // Local, on any thread, on the calling thread's current device: starts joining the
  // communicator and returns at once; NCCL finishes in the background, which needs every
  // rank of `boot` to call start(). The caller must wait_ready() before using it. Throws
  // core::Error(kComm) when NCCL refuses at once.
  static NcclComm start(const NcclBootstrap& boot);

  ncclComm_t get() const { return comm_.get(); }
  explicit operator bool() const { return static_cast<bool>(comm_); }

  // Local: the communicator's state (ncclSuccess, ncclInProgress or an error).
  ncclResult_t async_error() const;
  // Local: polls until the last non-blocking call on the communicator has finished.
  // On an error, once `deadline` passes, or once `*cancel` is set (another thread gave
  // up on the set-up), aborts the communicator and throws core::Error(kComm) naming `what`.
  void wait_ready(const char* what, const Deadline& deadline,
                  const std::atomic<bool>* cancel = nullptr);
  // Local: ncclGroupEnd(), then wait_ready. Every rank that took part in the group calls it.
  void group_end(const char* what, const Deadline& deadline);
  // Local: ncclCommAbort (a borrowed one too); in-flight operations are cancelled and the
  // handle is gone. The destructor of an owned communicator does the same.
  void abort() noexcept { comm_.reset(); }
  // Collective: ncclCommFinalize (flushes outstanding work), wait, ncclCommDestroy; a
  // borrowed communicator is only let go. Throws core::Error(kComm) (after aborting) on
  // failure or once `deadline` passes.
  void close(const Deadline& deadline);
  bool owned() const { return owned_; }

 private:
  struct Traits {
    static ncclComm_t null() noexcept { return nullptr; }
    static void close(ncclComm_t comm) noexcept;  // ncclCommAbort
  };
  explicit NcclComm(ncclComm_t comm) : comm_(comm) {}
  core::UniqueHandle<ncclComm_t, Traits> comm_;
  bool owned_ = true;
};

// Move-only owner of a local user-buffer registration (ncclCommRegister). With both ends
// of a send/receive registered, NCCL moves the bytes between the user buffers directly
// instead of through its own FIFO, halving its memory traffic and freeing SMs for the
// work next to it (docs/PERFORMANCE.md). NCCL requires that the ranks of an operation all
// pass registered buffers or none; NCCL_LOCAL_REGISTER=0 turns registration off.
class NcclRegistration {
 public:
  NcclRegistration() = default;
  // Local: registers [data, data + bytes) (ncclMemAlloc'd) with `comm`, which must
  // outlive this object. Throws core::Error(kComm) on failure.
  NcclRegistration(NcclComm& comm, void* data, size_t bytes, const Deadline& deadline);
  explicit operator bool() const { return registration_.get().handle != nullptr; }
  // Deregisters while the communicator is open; once it is closed or aborted, NCCL has
  // already dropped the registration. The destructor does the same.
  void reset() noexcept { registration_.reset(); }

 private:
  struct Registered {
    const NcclComm* comm = nullptr;
    void* handle = nullptr;
    bool operator==(const Registered& o) const { return comm == o.comm && handle == o.handle; }
  };
  struct Traits {
    static Registered null() noexcept { return {}; }
    static void close(Registered registered) noexcept;
  };
  core::UniqueHandle<Registered, Traits> registration_;
};

}  // namespace eplb::runtime
