// The NCCL backend's state, shared by its set-up (nccl_setup.cpp), its exchange rounds
// (nccl_exchange.cpp) and its public methods (nccl_transport.cpp). NCCL builds only.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "eplb/core/clock.hpp"
#include "eplb/core/error.hpp"
#include "eplb/runtime/cuda.hpp"
#include "eplb/transport/nccl_detail.hpp"
#include "nccl_memory.hpp"

namespace eplb::transport {

// Every piece but a stream's last is a 256-byte multiple, which keeps every peer's staging
// offset aligned for NCCL's and the copy kernel's wide accesses.
inline constexpr size_t kPieceAlign = 256;

// What exchange() uses on the device; index [b] of an event pair is staging half b.
struct DeviceResources {
  runtime::DeviceBuffer staging;  // [send 0 | send 1 | recv 0 | recv 1]
  size_t half_bytes = 0;          // one quarter of the budget: one half of one direction
  // NCCL's kernels first, then the pipeline's copies, then the caller's own work: a copy
  // kernel that grabs the SMs first delays the NCCL kernel of the next round.
  runtime::Stream gather_stream = runtime::Stream::with_priority(1);
  runtime::Stream comm_stream = runtime::Stream::with_priority(100);
  runtime::Stream scatter_stream = runtime::Stream::with_priority(1);
  runtime::Event gathered[2], comm_done[2], scattered[2];
  // Agreements over NCCL: a few int64 on the device and in page-locked host memory, so that
  // the copies never block the host (a peer that never comes must not hold it).
  runtime::DeviceBuffer agree_device;
  runtime::PinnedBuffer agree_host;
  runtime::Event agreed;
  runtime::Event caller_ready;  // the caller's stream's work, which exchanges wait for
};

// The set-up that needs no other process: the CUDA context, device staging and streams,
// and this rank's start of the communicator, which NCCL then finishes on its own threads.
// It takes a second or more on H200s, so a helper thread runs it while the caller goes on
// (creates the output, reads the first layers); the transport waits for it where it first
// needs it (Impl::ready). The helper touches nothing but this object, which it co-owns: a
// helper detached after a timeout never touches freed memory.
struct BackgroundSetup {
  BackgroundSetup(int dev_idx, size_t half_size, const runtime::NcclBootstrap& b,
                  std::chrono::milliseconds timeout)
      : device(dev_idx), half_bytes(half_size), boot(b), deadline(timeout) {}
  void run() noexcept;
  bool local_done() const { return phase.load(std::memory_order_acquire) >= kLocalDone; }

  const int device;
  const size_t half_bytes;
  const runtime::NcclBootstrap boot;
  const runtime::Deadline deadline;  // the command's --timeout, from the constructor on
  std::atomic<bool> cancel{false};   // the owner gave up: stop waiting for the communicator
  // NOTE: the owner reads local_error, dev and seconds_* once phase >= kLocalDone, and
  // the rest once the helper is joined.
  enum Phase : int { kRunning, kLocalDone, kFinished };
  std::atomic<int> phase{kRunning};
  std::optional<core::Error> local_error;  // CUDA context, NCCL start or staging failed
  std::optional<core::Error> comm_error;   // the communicator failed or timed out
  std::optional<DeviceResources> dev;
  runtime::NcclComm nccl;  // declared after dev: aborted before the staging is freed
  double seconds_context = 0;
  double seconds_staging = 0;
  double seconds_locking = 0;
  detail::LockResult locked;  // the host buffers handed out so far, page-locked here
  core::Clock::time_point comm_ready{};
};

// Per-process resources: device, staging halves, streams, events, communicators.
struct NcclTransport::Impl {
  Impl(NcclTransport::Start start, const TransportOptions& opts);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  std::byte* send_half(size_t b) { return dev->staging.data() + b * dev->half_bytes; }
  std::byte* recv_half(size_t b) { return dev->staging.data() + (2 + b) * dev->half_bytes; }
  void check_usable() const;
  // Collective, the first time: waits for the background set-up of this process, agrees
  // that every process has one, waits for the communicator and registers the staging.
  void ready();
  // Cancels the background set-up and joins its thread (detaches it after kHelperGrace).
  void stop_helper() noexcept;
  // Collective: over `control` if the transport has one, else over NCCL (after ready()).
  std::vector<long long> all_max(const std::vector<long long>& values, std::string_view phase);
  size_t agree_max_peers(long long local);
  // The one failure path: runs `fn`; if it throws, marks the transport failed and aborts
  // the communicator (peers may be blocked in a group that will never complete: abort,
  // never wait), then rethrows.
  template <typename Fn>
  decltype(auto) guarded(Fn&& fn) {
    try {
      return fn();
    } catch (...) {
      failed = true;
      nccl.abort();
      throw;
    }
  }

  TransportOptions options;
  std::unique_ptr<Control> control;  // null: agreements over NCCL itself
  cudaStream_t caller_stream = nullptr;
  int rank = 0;
  int size = 1;
  int device = 0;
  bool failed = false;
  bool closed = false;
  std::optional<DeviceResources> dev;
  runtime::NcclComm nccl;  // aborted before the buffers it may use are freed
  runtime::NcclRegistration staging_registration;  // dropped before the communicator
  // Until ready(): the background set-up and its thread; afterwards empty.
  core::Clock::time_point started = core::Clock::now();
  std::shared_ptr<BackgroundSetup> setup;
  std::thread helper;
  SetupTimes times;

 private:
  // Both ways of starting end here: agrees on every rank's set-up (no `local_error`), and
  // returns whether every rank's staging can be registered (register_staging, once the
  // communicator is up).
  bool finish_setup(const std::optional<core::Error>& local_error);
  void register_staging(bool registrable);
  std::vector<long long> nccl_all_max(const std::vector<long long>& values, std::string_view phase);
};

// Local: a device's staging and streams for exchanges, with `half_bytes` per half.
DeviceResources make_device_resources(size_t half_bytes);

}  // namespace eplb::transport
