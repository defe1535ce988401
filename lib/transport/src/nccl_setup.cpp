// NCCL backend: getting ready. Two ways in: a communicator of the transport's own, joined
// on a helper thread while the caller reads its first layers (BackgroundSetup), or the
// caller's communicator, borrowed and ready at once. Both end in one agreement on every
// rank's set-up (over MPI when the transport was made from an MPI communicator, which names
// silent ranks; else over NCCL) and the registration of the staging buffer. NCCL builds only.
#include <fmt/format.h>

#include <cstdlib>

#include "eplb/core/log.hpp"
#include "eplb/runtime/deadline.hpp"
#include "nccl_impl.hpp"

namespace eplb::transport {
namespace {

using core::Clock;
using core::Error;
using core::ErrorKind;
using core::seconds_since;

// How long a cancelled background set-up may take to stop (see Impl::stop_helper).
constexpr std::chrono::milliseconds kHelperGrace{std::chrono::seconds(10)};
// int64 values one NCCL agreement carries at most (longer vectors go in several).
constexpr size_t kAgreeWords = 64;

// Fault injection for the GPU tests (docs/RELIABILITY.md): EPLB_FAULT_NCCL_SETUP=RANK
// makes that rank's background set-up fail before it starts the communicator, which its
// peers have started: the worst case for them.
bool setup_fault_injected(int rank) {
  static const char* spec = std::getenv("EPLB_FAULT_NCCL_SETUP");
  return spec != nullptr && *spec != '\0' && std::atoi(spec) == rank;
}

// The staging buffer: ncclMemAlloc'd where NCCL can (so that it can be registered).
runtime::DeviceBuffer allocate_staging(size_t half_bytes) {
  runtime::DeviceBuffer staging = runtime::DeviceBuffer::for_nccl(4 * half_bytes);
  if (!staging.data()) staging = runtime::DeviceBuffer(4 * half_bytes);
  return staging;
}

}  // namespace

DeviceResources make_device_resources(size_t half_bytes) {
  DeviceResources d;
  d.half_bytes = half_bytes;
  d.agree_device = runtime::DeviceBuffer(kAgreeWords * sizeof(long long));
  d.agree_host = runtime::PinnedBuffer(kAgreeWords * sizeof(long long));
  return d;
}

void BackgroundSetup::run() noexcept {
  const auto start = Clock::now();
  try {
    EPLB_CUDA_CHECK(cudaSetDevice(device));
    EPLB_CUDA_CHECK(cudaFree(nullptr));  // the context now, timed as such
    seconds_context = seconds_since(start);
    if (setup_fault_injected(boot.rank)) {
      throw Error(ErrorKind::kComm,
                  fmt::format("EPLB_FAULT_NCCL_SETUP: the NCCL set-up of rank {} fails "
                              "(injected)",
                              boot.rank));
    }
    // NOTE: every rank's GPU was agreed on (or given) before this thread started, so every
    // rank starts the communicator and NCCL can finish it.
    nccl = runtime::NcclComm::start(boot);
    // While NCCL sets up the communicator on its own threads: the host buffers the caller
    // has asked for so far (it reads into them meanwhile), then the device staging.
    const auto locking_start = Clock::now();
    locked = detail::lock_waiting(device);
    seconds_locking = seconds_since(locking_start);
    const auto staging_start = Clock::now();
    dev.emplace(make_device_resources(half_bytes));
    dev->staging = allocate_staging(half_bytes);
    seconds_staging = seconds_since(staging_start);
    // A second pass: buffers the caller asked for meanwhile.
    const auto second_start = Clock::now();
    const detail::LockResult more = detail::lock_waiting(device);
    seconds_locking += seconds_since(second_start);
    locked.buffers += more.buffers;
    locked.bytes += more.bytes;
    if (locked.error.empty()) locked.error = more.error;
  } catch (const Error& e) {
    local_error = e;
  } catch (const std::exception& e) {
    local_error =
        Error(ErrorKind::kInternal, fmt::format("internal error: NCCL set-up: {}", e.what()));
  }
  phase.store(kLocalDone, std::memory_order_release);
  // A started communicator is waited for even after a local failure: an agreement over NCCL
  // needs it to tell the peers (the owner cancels the wait when it agrees over MPI).
  if (nccl) {
    try {
      nccl.wait_ready("ncclCommInitRankConfig", deadline, &cancel);
      comm_ready = Clock::now();
    } catch (const Error& e) {
      comm_error = e;
    } catch (const std::exception& e) {
      comm_error =
          Error(ErrorKind::kInternal, fmt::format("internal error: NCCL set-up: {}", e.what()));
    }
  }
  phase.store(kFinished, std::memory_order_release);
}

NcclTransport::Impl::Impl(NcclTransport::Start start, const TransportOptions& opts)
    : options(opts), control(std::move(start.control)), caller_stream(start.caller_stream) {
  const size_t half_bytes = options.device_staging_bytes / 4 / kPieceAlign * kPieceAlign;
  if (half_bytes == 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL staging budget of {} bytes is too small (at least {} needed)",
                            options.device_staging_bytes, 4 * kPieceAlign));
  }
  if (start.borrowed != nullptr) {
    // The caller's communicator is up: everything happens here, on the caller's thread.
    nccl = runtime::NcclComm::borrow(start.borrowed);
    guarded([&] {
      EPLB_NCCL_CHECK(ncclCommUserRank(start.borrowed, &rank));
      EPLB_NCCL_CHECK(ncclCommCount(start.borrowed, &size));
      EPLB_NCCL_CHECK(ncclCommCuDevice(start.borrowed, &device));
      EPLB_CUDA_CHECK(cudaSetDevice(device));
      dev.emplace(make_device_resources(half_bytes));
      std::optional<Error> local_error;
      try {
        dev->staging = allocate_staging(half_bytes);
      } catch (const Error& e) {
        local_error = e;
      }
      register_staging(finish_setup(local_error));
    });
    times.seconds = times.seconds_blocked = seconds_since(started);
    return;
  }
  EPLB_ASSERT(start.boot.has_value());
  rank = start.boot->rank;
  size = start.boot->size;
  device = start.device;
  if (device < 0) EPLB_CUDA_CHECK(cudaGetDevice(&device));
  // The rest (CUDA context, staging, the communicator) runs behind the caller's back.
  setup = std::make_shared<BackgroundSetup>(device, half_bytes, *start.boot, options.timeout);
  helper = std::thread([s = setup] { s->run(); });
  times.seconds_blocked = seconds_since(started);
}

NcclTransport::Impl::~Impl() {
  if (helper.joinable()) stop_helper();
}

void NcclTransport::Impl::stop_helper() noexcept {
  // The helper stops waiting for the communicator at once (aborting it); its local steps
  // are short. Should NCCL's abort of a half-made communicator hang, the helper is left
  // behind rather than this rank: it owns its share of `setup`.
  setup->cancel.store(true);
  const bool finished = runtime::poll_until(
      [&] { return setup->phase.load(std::memory_order_acquire) >= BackgroundSetup::kFinished; },
      runtime::Deadline(kHelperGrace));
  if (finished) {
    helper.join();
  } else {
    helper.detach();
  }
}

void NcclTransport::Impl::ready() {
  if (!setup) return;  // ready already (or failed: check_usable says so)
  const auto arrived = Clock::now();
  guarded([&] {
    // This process's part: local, but bounded all the same.
    if (!runtime::poll_until([&] { return setup->local_done(); }, setup->deadline)) {
      setup->cancel.store(true);
      helper.detach();  // it owns its share of `setup`; it cannot be interrupted
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL transport set-up timed out after {} (CUDA context and "
                              "device staging of GPU {})",
                              setup->deadline.timeout_text(), device));
    }
    if (control) {
      // Over MPI: every process's part is agreed on first, so that a failing rank stops
      // every other before anyone waits for the communicator.
      dev = std::move(setup->dev);
      bool registrable = false;
      try {
        registrable = finish_setup(setup->local_error);
      } catch (...) {
        stop_helper();
        throw;
      }
      helper.join();
      if (setup->comm_error) throw *setup->comm_error;
      nccl = std::move(setup->nccl);
      register_staging(registrable);
    } else {
      // Over NCCL: the communicator carries the agreement, so it must be up first. A rank
      // without one cannot tell its peers: they time out in the agreement.
      helper.join();
      if (setup->comm_error) throw *setup->comm_error;
      if (!setup->nccl || !setup->dev) throw *setup->local_error;
      nccl = std::move(setup->nccl);
      dev = std::move(setup->dev);
      register_staging(finish_setup(setup->local_error));
    }
    // Host buffers handed out after the helper's pass: page-locked here, before any
    // exchange copies from them.
    const auto late_start = Clock::now();
    detail::LockResult late = detail::lock_waiting(device);
    const double late_s = seconds_since(late_start);
    for (const auto* r : {&setup->locked, &late}) {
      if (!r->error.empty()) {
        core::log::warn("NCCL transport: a host buffer stays pageable (slower copies): {}",
                        r->error);
      }
    }
    const double comm_s = std::chrono::duration<double>(setup->comm_ready - started).count();
    times.seconds += comm_s;  // register_staging added its own time
    times.seconds_blocked += seconds_since(arrived);
    times.steps = fmt::format(
        "GPU {} context {:.3f} s, {} host buffers ({:.0f} MiB) page-locked in the background "
        "{:.3f} s and {} ({:.0f} MiB) at first use {:.3f} s, device staging {:.0f} MiB ({}) "
        "{:.3f} s, communicator ready {:.3f} s after the start, {}",
        device, setup->seconds_context, setup->locked.buffers,
        static_cast<double>(setup->locked.bytes) / (1 << 20), setup->seconds_locking, late.buffers,
        static_cast<double>(late.bytes) / (1 << 20), late_s,
        static_cast<double>(dev->staging.size()) / (1 << 20),
        dev->staging.from_nccl() ? "ncclMemAlloc" : "cudaMalloc", setup->seconds_staging, comm_s,
        times.steps);
  });
  setup.reset();
}

bool NcclTransport::Impl::finish_setup(const std::optional<Error>& local_error) {
  // NOTE: NCCL needs registered buffers on both ends of an operation or on neither, so
  // registration is agreed on in the same collective.
  const bool ok = !local_error;
  const bool registrable = ok && dev && dev->staging.from_nccl();
  const auto flags =
      all_max({ok ? 0LL : 1LL, registrable ? 0LL : 1LL}, "NCCL transport set-up (GPU and staging)");
  if (flags[0] != 0) {
    // Agreed: every rank stops here, so none is left waiting and the job ends cleanly
    // (exit code of kComm everywhere); the failing rank says why, as agree() does.
    if (local_error) {
      for (const auto& problem : local_error->problems()) core::log::error("{}", problem);
    }
    throw Error::reported_elsewhere(ErrorKind::kComm);
  }
  return flags[1] == 0;
}

void NcclTransport::Impl::register_staging(bool registrable) {
  EPLB_CUDA_CHECK(cudaSetDevice(device));
  const auto start = Clock::now();
  if (registrable) {
    staging_registration = runtime::NcclRegistration(nccl, dev->staging.data(), dev->staging.size(),
                                                     runtime::Deadline(options.timeout));
  }
  times.seconds += seconds_since(start);
  times.steps = fmt::format("staging {} {:.3f} s",
                            registrable ? "registered"
                                        : "not registered (not ncclMemAlloc'd "
                                          "on every rank)",
                            seconds_since(start));
}

void NcclTransport::Impl::check_usable() const {
  if (closed) throw Error(ErrorKind::kInternal, "internal error: NCCL use after close()");
  if (failed) {
    throw Error(ErrorKind::kComm, "NCCL transport is unusable after an earlier failed exchange");
  }
}

std::vector<long long> NcclTransport::Impl::all_max(const std::vector<long long>& values,
                                                    std::string_view phase) {
  if (control) return control->all_max(values, phase);
  return nccl_all_max(values, phase);
}

// Over the communicator itself: one ncclAllReduce per kAgreeWords values, between
// page-locked host memory and the device, on the comm stream, polled with the deadline.
std::vector<long long> NcclTransport::Impl::nccl_all_max(const std::vector<long long>& values,
                                                         std::string_view phase) {
  EPLB_ASSERT(dev && nccl);
  EPLB_CUDA_CHECK(cudaSetDevice(device));
  const runtime::Deadline deadline(options.timeout);
  cudaStream_t stream = dev->comm_stream.get();
  auto* host = reinterpret_cast<long long*>(dev->agree_host.data());
  auto* device_words = reinterpret_cast<long long*>(dev->agree_device.data());
  std::vector<long long> out(values);
  const auto wait = [&](const char* step, bool event) {
    const bool done = runtime::poll_until(
        [&] {
          const ncclResult_t state = nccl.async_error();
          if (state != ncclSuccess && state != ncclInProgress) {
            throw Error(ErrorKind::kComm, fmt::format("NCCL agreement on {} failed in {}: {}",
                                                      phase, step, ncclGetErrorString(state)));
          }
          return event ? dev->agreed.done() : state == ncclSuccess;
        },
        deadline);
    if (!done) {
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL agreement on {} timed out after {} in {}: a peer of the {} "
                              "ranks did not take part (NCCL does not say which)",
                              phase, deadline.timeout_text(), step, size));
    }
  };
  for (size_t at = 0; at < out.size(); at += kAgreeWords) {
    const size_t n = std::min(kAgreeWords, out.size() - at);
    std::copy_n(out.begin() + static_cast<std::ptrdiff_t>(at), n, host);
    EPLB_CUDA_CHECK(
        cudaMemcpyAsync(device_words, host, n * sizeof(long long), cudaMemcpyHostToDevice, stream));
    const ncclResult_t rc =
        ncclAllReduce(device_words, device_words, n, ncclInt64, ncclMax, nccl.get(), stream);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      throw Error(ErrorKind::kComm, fmt::format("NCCL agreement on {}: ncclAllReduce failed: {}",
                                                phase, ncclGetErrorString(rc)));
    }
    wait("ncclAllReduce", false);  // a non-blocking communicator may still be enqueueing
    EPLB_CUDA_CHECK(
        cudaMemcpyAsync(host, device_words, n * sizeof(long long), cudaMemcpyDeviceToHost, stream));
    dev->agreed.record(stream);
    wait("the copy back", true);
    std::copy_n(host, n, out.begin() + static_cast<std::ptrdiff_t>(at));
  }
  return out;
}

// NOTE: the sender and the receiver of a pair must cut its stream into the same pieces, so
// the piece cap derives from the largest peer count of any rank, agreed here.
size_t NcclTransport::Impl::agree_max_peers(long long local) {
  return static_cast<size_t>(all_max({local}, "the start of an NCCL exchange (piece size)")[0]);
}

}  // namespace eplb::transport
