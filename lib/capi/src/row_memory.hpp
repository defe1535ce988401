// Where the in-server library's rows live, host or device, and how it copies them: the
// one thing Rearranger does differently for CPU tensors (the MPI transport) and for CUDA
// tensors (the NCCL transport).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "eplb/exchange/copier.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::capi {

// One row copy into place: staging -> the caller's tensor.
struct RowCopy {
  std::byte* dst;
  const std::byte* src;
  size_t bytes;
};

// One row to hash.
struct ConstRow {
  const std::byte* data;
  size_t bytes;
};

class RowMemory {
 public:
  virtual ~RowMemory() = default;
  // Local: memory for the staging of changed rows (device memory for a device).
  virtual std::byte* allocate_staging(size_t bytes) = 0;
  // Local: makes the calling thread's current device the tensors' (workers call it).
  virtual void make_current() = 0;
  // Local, before an exchange reads the tensors and writes the staging: waits on the host,
  // within the timeout, for the work already enqueued on `caller_stream` (a device; nullptr:
  // the legacy stream) and for the last place()'s copies, which read the staging.
  virtual void before_exchange(void* caller_stream) = 0;
  // Local: the copier LayerExchange uses for local rows.
  virtual exchange::Copier& copier() = 0;
  // Local: the copies into place. Host: done on return. Device: enqueued on
  // `caller_stream` (the caller's later work on it sees the new rows), or with `wait` on
  // the library's own stream and done on return.
  virtual void place(const std::vector<RowCopy>& copies, void* caller_stream, bool wait) = 0;
  // Local: core::row_hash of each row, on return (a device: one kernel launch, waited for
  // within the timeout).
  virtual std::vector<uint64_t> hash(const std::vector<ConstRow>& rows) = 0;
  // Local, for fault injection only: flips the lowest bit of the byte at `p`.
  virtual void flip_byte(std::byte* p) = 0;
  // Local: true for device memory.
  virtual bool device() const = 0;
};

// Host memory: staging from the transport (pinned for NCCL), memcpy.
std::unique_ptr<RowMemory> make_host_memory(transport::Transport& transport);
// Memory of CUDA device `device`; every wait within `timeout`. Throws core::Error(kComm)
// in a build without CUDA.
std::unique_ptr<RowMemory> make_device_memory(int device, std::chrono::milliseconds timeout);
// Local: the CUDA device `p` lives on, or -1 for host memory (always -1 without CUDA).
int device_of(const void* p);

}  // namespace eplb::capi
