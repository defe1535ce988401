// The NCCL backend's concrete type, for code that drives NCCL itself next to exchange():
// the `bench` subcommand runs a raw grouped send/recv baseline and the vLLM pattern on the
// same communicator and stream. Only for builds with the NCCL backend (includes nccl.h):
// only source files that CMake compiles when NCCL was found include it.
#pragma once

#include <memory>
#include <optional>

#include "eplb/runtime/cuda.hpp"
#include "eplb/transport/nccl_transport.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// NCCL transport. exchange() moves every Transfer through device staging buffers
// (registered with NCCL where possible) in rounds, so that device memory stays within
// options.device_staging_bytes; gathers, NCCL transfers and scatters of consecutive rounds
// overlap on three streams.
//
// NOTE: segments in device memory must hold their data when exchange() is called: work
// that wrote them on another stream must be synchronized with the host first.
class NcclTransport final : public Transport {
 public:
  // How the transport gets its communicator: one of its own, joined with `boot` on
  // `device` (the CUDA context, the device staging and the communicator are then set up on
  // a helper thread, and the first exchange(), wait_ready() or close() waits for them), or
  // the caller's `borrowed` one (set up in the constructor). Agreements go over `control`
  // when given, else over NCCL.
  struct Start {
    std::optional<runtime::NcclBootstrap> boot;
    int device = -1;
    ncclComm_t borrowed = nullptr;
    cudaStream_t caller_stream = nullptr;  // borrowed: exchanges wait for its work first
    std::unique_ptr<Control> control;
  };
  // Collective over the communicator's processes: see make_nccl_transport and
  // make_nccl_transport_from_comm.
  NcclTransport(Start start, const TransportOptions& options);
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;
  NcclTransport(NcclTransport&&) = delete;
  NcclTransport& operator=(NcclTransport&&) = delete;

  std::string_view name() const override { return "nccl"; }
  int rank() const override;
  int size() const override;
  using Transport::exchange;
  void exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs,
                int max_peers) override;
  // Local: pinned host memory (cudaHostAlloc).
  HostBuffer allocate_host(size_t bytes) override;
  std::vector<long long> all_max(const std::vector<long long>& values,
                                 std::string_view phase) override;
  void close() override;
  SetupTimes setup_times() const override;

  // Collective, once (later calls return at once): waits for the set-up the constructor
  // began, on this process and every other, within options.timeout. The first
  // exchange() does the same; callers that use comm(), stream() or register_buffer()
  // before any exchange() call this first. Throws core::Error(kComm) as the constructor
  // did (a rank's own failure on that rank, the others reported elsewhere); the transport
  // is unusable afterwards.
  void wait_ready();

  // Local, after wait_ready(): the communicator, for NCCL calls made by the caller. Every rank must
  // issue the same sequence of NCCL operations on it, interleaved identically with exchange().
  ncclComm_t comm() const;
  // Local, after wait_ready(): the stream exchange() runs its NCCL operations on.
  cudaStream_t stream() const;
  // Local: the CUDA device this process uses.
  int device() const;
  // Local: device memory on device() (made current on the calling thread).
  runtime::DeviceBuffer allocate_device(size_t bytes) const;
  // Local, after wait_ready(): registers `buffer` (from DeviceBuffer::for_nccl) with comm(); the
  // registration must be dropped before the buffer is freed. See runtime::NcclRegistration.
  runtime::NcclRegistration register_buffer(const runtime::DeviceBuffer& buffer);
  // Local: ncclGroupEnd() for a group the caller started with ncclGroupStart(), then
  // waits until the non-blocking communicator has taken the group (bounded by the timeout).
  void group_end(const char* what);
  // Local: returns once the work enqueued on `stream` is done, polling the communicator's
  // error state. On an NCCL error or after options.timeout, aborts the communicator and
  // throws core::Error(kComm) naming `what`; the transport is unusable afterwards.
  void wait(cudaStream_t stream, const char* what);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace eplb::transport
