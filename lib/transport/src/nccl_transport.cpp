// NCCL backend: the pipeline. NCCL builds only (nccl_stub.cpp stands in otherwise); memory
// classification is in nccl_memory.cpp, the round trace in nccl_trace.cpp.
//
// With NCCL, exchange() moves the byte streams in rounds. In round k every peer's stream
// contributes its k-th piece (detail::piece_sizes: at most `piece_cap` bytes, ramped up at the
// start and down at the end, the same on both sides of a pair);
// a round is one NCCL group with one send and one receive per peer. Staging is double
// buffered and three streams overlap the phases of consecutive rounds:
//
//   gather stream:  G0 G1    G2    G3 ...   (segments -> send staging half k%2)
//   comm stream:       N0 N1    N2    ...   (NCCL group of round k)
//   scatter stream:       S0    S1    ...   (recv staging half k%2 -> segments)
//
// N(k) waits for G(k) and for S(k-2) (same receive half); G(k) waits for N(k-2) (same send
// half); S(k) waits for N(k). Every send and receive uses the staging buffer, which is
// registered with NCCL where every rank could allocate it with ncclMemAlloc: NCCL then
// moves the bytes between the staging buffers of the two GPUs directly, not through its
// own FIFO, which leaves memory bandwidth and SMs to the copies next to it (on 2 H200s,
// a/b rose from 0.74 to 0.85; docs/PERFORMANCE.md).
#include "eplb/transport/nccl_transport.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "detail.hpp"
#include "eplb/core/clock.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/runtime/batched_copy.hpp"
#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/nccl_detail.hpp"
#include "nccl_memory.hpp"
#include "nccl_trace.hpp"

namespace eplb::transport {

namespace {

using core::Clock;
using core::Error;
using core::ErrorKind;
using core::seconds_since;
using runtime::Event;

// Every piece but a stream's last is a 256-byte multiple, which keeps every peer's staging
// offset aligned for NCCL's and the copy kernel's wide accesses.
constexpr size_t kPieceAlign = 256;
// The ramp at both ends of a stream (detail::piece_sizes) stops at pieces of 64 MiB per
// peer: below that, NCCL's per-peer bandwidth drops (to ~70% of its peak at 64 MiB on
// H200s), and at 4 GPUs a ramp down to 21 MiB pieces cost more than it saved.
constexpr size_t kMinRampPiece = size_t{64} << 20;
// How long a cancelled background set-up may take to stop (see Impl::stop_helper).
constexpr std::chrono::milliseconds kHelperGrace{std::chrono::seconds(10)};

// What exchange() uses on the device; index [b] of an event pair is staging half b.
struct DeviceResources {
  runtime::DeviceBuffer staging;  // [send 0 | send 1 | recv 0 | recv 1]
  size_t half_bytes = 0;          // one quarter of the budget: one half of one direction
  // NCCL's kernels first, then the pipeline's copies, then the caller's own work: a copy
  // kernel that grabs the SMs first delays the NCCL kernel of the next round.
  runtime::Stream gather_stream = runtime::Stream::with_priority(1);
  runtime::Stream comm_stream = runtime::Stream::with_priority(100);
  runtime::Stream scatter_stream = runtime::Stream::with_priority(1);
  Event gathered[2], comm_done[2], scattered[2];
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
  std::optional<Error> local_error;  // CUDA context, NCCL start or staging failed
  std::optional<Error> comm_error;   // the communicator failed or timed out
  std::optional<DeviceResources> dev;
  runtime::NcclComm nccl;  // declared after dev: aborted before the staging is freed
  double seconds_context = 0;
  double seconds_staging = 0;
  double seconds_locking = 0;
  detail::LockResult locked;  // the host buffers handed out so far, page-locked here
  Clock::time_point comm_ready{};
};

// Fault injection for the GPU tests (docs/RELIABILITY.md): EPLB_FAULT_NCCL_SETUP=RANK
// makes that rank's background set-up fail before it starts the communicator, which its
// peers have started: the worst case for them.
bool setup_fault_injected(int rank) {
  static const char* spec = std::getenv("EPLB_FAULT_NCCL_SETUP");
  return spec != nullptr && *spec != '\0' && std::atoi(spec) == rank;
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
    // NOTE: every rank's GPU was agreed on before this thread started, so every rank
    // starts the communicator and NCCL can finish it.
    nccl = runtime::NcclComm::start(boot);
    // While NCCL sets up the communicator on its own threads: the host buffers the caller
    // has asked for so far (it reads into them meanwhile), then the device staging.
    const auto locking_start = Clock::now();
    locked = detail::lock_waiting(device);
    seconds_locking = seconds_since(locking_start);
    const auto staging_start = Clock::now();
    dev.emplace();
    dev->half_bytes = half_bytes;
    dev->staging = runtime::DeviceBuffer::for_nccl(4 * half_bytes);
    if (!dev->staging.data()) dev->staging = runtime::DeviceBuffer(4 * half_bytes);
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
  if (!local_error) {
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

}  // namespace

// Per-process resources: device, staging halves, streams, events, communicators.
struct NcclTransport::Impl {
  Impl(MPI_Comm comm, int node_rank, const TransportOptions& opts);
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
  size_t agree_max_peers(long long local);
  // The transport's processes and the command's timeout, for its agreements.
  runtime::Group group() const { return runtime::Group{mpi.get(), options.timeout}; }
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
  runtime::MpiComm mpi;
  int rank = 0;
  int size = 1;
  int device = 0;
  bool failed = false;
  bool closed = false;
  std::optional<DeviceResources> dev;
  runtime::NcclComm nccl;  // aborted before the buffers it may use are freed
  runtime::NcclRegistration staging_registration;  // dropped before the communicator
  // Until ready(): the background set-up and its thread; afterwards empty.
  Clock::time_point started = Clock::now();
  std::shared_ptr<BackgroundSetup> setup;
  std::thread helper;
  SetupTimes times;
};

NcclTransport::Impl::Impl(MPI_Comm comm, int node_rank, const TransportOptions& opts)
    : options(opts), mpi(runtime::MpiComm::dup(comm)) {
  EPLB_MPI_CHECK(MPI_Comm_rank(mpi.get(), &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(mpi.get(), &size));
  size_t half_bytes = options.max_staging_bytes / 4 / kPieceAlign * kPieceAlign;
  if (half_bytes == 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL staging budget of {} bytes is too small (at least {} needed)",
                            options.max_staging_bytes, 4 * kPieceAlign));
  }
  // Every rank's GPU is agreed on first, so that NCCL set-up starts only where it can
  // finish: a rank without a GPU must not leave the others waiting in ncclCommInit.
  std::optional<Error> local_error;
  try {
    device = runtime::choose_device(node_rank);
  } catch (const Error& e) {
    local_error = e;
  }
  if (!runtime::all_true(group(), !local_error, "NCCL transport set-up (GPU and staging)")) {
    if (local_error) throw *local_error;
    throw Error::reported_elsewhere(ErrorKind::kComm);
  }
  const runtime::NcclBootstrap boot = runtime::NcclComm::bootstrap(group());
  // The rest (CUDA context, staging, the communicator) runs behind the caller's back.
  setup = std::make_shared<BackgroundSetup>(device, half_bytes, boot, options.timeout);
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
    // Every process's part. NOTE: NCCL needs registered buffers on both ends of an
    // operation or on neither, so registration is agreed on in the same collective.
    const bool ok = !setup->local_error;
    const bool registrable = ok && setup->dev->staging.from_nccl();
    const auto flags = runtime::all_max(group(), {ok ? 0LL : 1LL, registrable ? 0LL : 1LL},
                                        "NCCL transport set-up (GPU and staging)");
    if (flags[0] != 0) {
      // Agreed: every rank stops here, so none is left waiting and the job ends cleanly
      // (exit code of kComm everywhere); the failing rank says why, as agree() does.
      stop_helper();
      if (setup->local_error) {
        for (const auto& problem : setup->local_error->problems()) {
          core::log::error("{}", problem);
        }
      }
      throw Error::reported_elsewhere(ErrorKind::kComm);
    }
    // The communicator: the helper waits for it, within the deadline.
    helper.join();
    if (setup->comm_error) throw *setup->comm_error;
    dev = std::move(setup->dev);
    nccl = std::move(setup->nccl);
    EPLB_CUDA_CHECK(cudaSetDevice(device));
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
    const auto registration_start = Clock::now();
    if (flags[1] == 0) {
      staging_registration = runtime::NcclRegistration(
          nccl, dev->staging.data(), dev->staging.size(), runtime::Deadline(options.timeout));
    }
    const double registration_s = seconds_since(registration_start);
    const double comm_s = std::chrono::duration<double>(setup->comm_ready - started).count();
    times.seconds = comm_s + registration_s;
    times.seconds_blocked += seconds_since(arrived);
    times.steps = fmt::format(
        "GPU {} context {:.3f} s, {} host buffers ({:.0f} MiB) page-locked in the background "
        "{:.3f} s and {} ({:.0f} MiB) at first use {:.3f} s, device staging {:.0f} MiB ({}) "
        "{:.3f} s, communicator ready {:.3f} s after the start, staging {} {:.3f} s",
        device, setup->seconds_context, setup->locked.buffers,
        static_cast<double>(setup->locked.bytes) / (1 << 20), setup->seconds_locking, late.buffers,
        static_cast<double>(late.bytes) / (1 << 20), late_s,
        static_cast<double>(dev->staging.size()) / (1 << 20),
        dev->staging.from_nccl() ? "ncclMemAlloc" : "cudaMalloc", setup->seconds_staging, comm_s,
        flags[1] == 0 ? "registered" : "not registered (not ncclMemAlloc'd on every rank)",
        registration_s);
  });
  setup.reset();
}

void NcclTransport::Impl::check_usable() const {
  if (closed) throw Error(ErrorKind::kInternal, "internal error: NCCL use after close()");
  if (failed) {
    throw Error(ErrorKind::kComm, "NCCL transport is unusable after an earlier failed exchange");
  }
}

// NOTE: the sender and the receiver of a pair must cut its stream into the same pieces, so
// the piece cap derives from the largest peer count of any rank, agreed here.
size_t NcclTransport::Impl::agree_max_peers(long long local) {
  return static_cast<size_t>(
      runtime::all_max(group(), {local}, "the start of an NCCL exchange (piece size)")[0]);
}

namespace {

// One exchange() call: the per-round bookkeeping of the pipeline.
class ExchangeRun {
 public:
  ExchangeRun(NcclTransport::Impl& t, std::span<const Transfer> sends,
              std::span<const Transfer> recvs);
  void run();

 private:
  struct Flow {
    int peer = -1;
    size_t total = 0;
    detail::SegmentCursor cursor;
    std::vector<size_t> pieces;          // bytes per round (detail::piece_sizes)
    std::vector<detail::MemKind> kinds;  // per segment
  };
  std::vector<Flow> make_flows(std::span<const Transfer> transfers);
  size_t piece_bytes(const Flow& flow, size_t round) const;
  void gather(size_t round);
  void communicate(size_t round);
  void scatter(size_t round);
  void wait_for(const Event* event, size_t round);
  // One piece between a flow's current segment and staging: device segments go to the
  // batched copy kernel, host segments to the copy engines.
  void copy(const Flow& flow, std::byte* dst, const std::byte* src, size_t n, cudaStream_t s);
  [[noreturn]] void fail_round(size_t round, const std::string& what);
  void mark(size_t round, detail::RoundTrace::Phase phase, bool end, cudaStream_t stream) {
    trace_.mark(round, phase, end, stream);
  }
  detail::RoundTrace trace_;  // TransportOptions::trace_rounds

  NcclTransport::Impl& t_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  double setup_ms_ = 0;  // host time from the call to the first gather (for the trace)
  double flows_ms_ = 0;  // of which classifying the segments
  detail::MemoryClassifier classifier_{t_.device};
  std::optional<runtime::Deadline> deadline_;  // from the agreement on, for the whole run
  std::vector<Flow> sends_, recvs_;
  bool pageable_recv_ = false;
  size_t piece_cap_ = 0;
  size_t num_rounds_ = 0;
  runtime::BatchedCopy batch_;
};

void ExchangeRun::copy(const Flow& flow, std::byte* dst, const std::byte* src, size_t n,
                       cudaStream_t s) {
  // NOTE: called from inside the cursor's take(), so current_index() is the piece's segment.
  if (flow.kinds[flow.cursor.current_index()] == detail::MemKind::kThisDevice) {
    batch_.add(dst, src, n);
  } else {
    EPLB_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, s));
  }
}

ExchangeRun::ExchangeRun(NcclTransport::Impl& t, std::span<const Transfer> sends,
                         std::span<const Transfer> recvs)
    : t_(t), sends_(make_flows(sends)), recvs_(make_flows(recvs)) {
  for (const auto& flow : recvs_) {
    pageable_recv_ |= std::ranges::count(flow.kinds, detail::MemKind::kPageable) > 0;
  }
  flows_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_)
                  .count();
}

std::vector<ExchangeRun::Flow> ExchangeRun::make_flows(std::span<const Transfer> transfers) {
  std::vector<Flow> flows;
  for (const auto& transfer : transfers) {
    size_t total = transfer.bytes();
    if (total == 0) continue;  // the peer skips it too: same total on both sides
    Flow flow{transfer.peer, total, detail::SegmentCursor(transfer.segments), {}, {}};
    for (const auto& seg : transfer.segments) {
      flow.kinds.push_back(seg.bytes > 0 ? classifier_.kind(seg.data) : detail::MemKind::kOther);
    }
    flows.push_back(std::move(flow));
  }
  return flows;
}

size_t ExchangeRun::piece_bytes(const Flow& flow, size_t round) const {
  return round < flow.pieces.size() ? flow.pieces[round] : 0;
}

void ExchangeRun::run() {
  size_t max_peers =
      t_.agree_max_peers(static_cast<long long>(std::max(sends_.size(), recvs_.size())));
  if (max_peers == 0) return;  // nothing moves anywhere
  deadline_.emplace(t_.options.timeout);
  piece_cap_ = t_.dev->half_bytes / max_peers / kPieceAlign * kPieceAlign;
  if (piece_cap_ == 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL staging budget of {} bytes is too small for {} peers",
                            t_.options.max_staging_bytes, max_peers));
  }
  for (auto* flows : {&sends_, &recvs_}) {
    for (auto& flow : *flows) {
      flow.pieces = detail::piece_sizes(flow.total, piece_cap_, kPieceAlign, kMinRampPiece);
      num_rounds_ = std::max(num_rounds_, flow.pieces.size());
    }
  }
  if (num_rounds_ == 0) return;
  trace_ = detail::RoundTrace(t_.options.trace_rounds, num_rounds_);
  setup_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_)
                  .count();
  // Issue order keeps G(k+1) ahead of S(k) on the host, so that it can overlap N(k); the
  // host waits for N(k-1) before G(k+1), which bounds the queued work to two rounds.
  gather(0);
  for (size_t k = 0; k < num_rounds_; ++k) {
    communicate(k);
    if (k + 1 < num_rounds_) {
      if (k >= 1) wait_for(&t_.dev->comm_done[(k - 1) % 2], k - 1);
      gather(k + 1);
    }
    scatter(k);
  }
  if (num_rounds_ >= 2) wait_for(&t_.dev->comm_done[num_rounds_ % 2], num_rounds_ - 2);
  wait_for(&t_.dev->comm_done[(num_rounds_ - 1) % 2], num_rounds_ - 1);
  wait_for(&t_.dev->scattered[(num_rounds_ - 1) % 2], num_rounds_ - 1);
  if (t_.rank == 0) trace_.print(piece_cap_, setup_ms_, flows_ms_);
}

void ExchangeRun::gather(size_t round) {
  const size_t b = round % 2;
  cudaStream_t stream = t_.dev->gather_stream.get();
  // NOTE: the send half is free again once the NCCL group two rounds back has read it.
  if (round >= 2) EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->comm_done[b].get(), 0));
  mark(round, detail::RoundTrace::kGather, false, stream);
  for (size_t i = 0; i < sends_.size(); ++i) {
    Flow& flow = sends_[i];
    size_t bytes = piece_bytes(flow, round);
    if (bytes == 0) continue;
    std::byte* dst = t_.send_half(b) + i * piece_cap_;
    flow.cursor.take(bytes, [&](std::byte* src, size_t n) {
      copy(flow, dst, src, n, stream);
      dst += n;
    });
  }
  batch_.flush(stream);
  mark(round, detail::RoundTrace::kGather, true, stream);
  t_.dev->gathered[b].record(stream);
}

void ExchangeRun::communicate(size_t round) {
  const size_t b = round % 2;
  cudaStream_t stream = t_.dev->comm_stream.get();
  EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->gathered[b].get(), 0));
  // NOTE: the receive half is free again once the scatter two rounds back has read it.
  if (round >= 2) EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->scattered[b].get(), 0));
  mark(round, detail::RoundTrace::kComm, false, stream);
  bool any = false;
  for (const auto* flows : {&sends_, &recvs_}) {
    for (const auto& flow : *flows) any |= piece_bytes(flow, round) > 0;
  }
  if (!any) {  // this rank has finished early: nothing to enqueue, keep the events chained
    mark(round, detail::RoundTrace::kComm, true, stream);
    t_.dev->comm_done[b].record(stream);
    return;
  }
  EPLB_NCCL_CHECK(ncclGroupStart());
  for (size_t i = 0; i < sends_.size(); ++i) {
    size_t bytes = piece_bytes(sends_[i], round);
    if (bytes == 0) continue;
    EPLB_NCCL_CHECK(ncclSend(t_.send_half(b) + i * piece_cap_, bytes, ncclUint8, sends_[i].peer,
                             t_.nccl.get(), stream));
  }
  for (size_t j = 0; j < recvs_.size(); ++j) {
    size_t bytes = piece_bytes(recvs_[j], round);
    if (bytes == 0) continue;
    EPLB_NCCL_CHECK(ncclRecv(t_.recv_half(b) + j * piece_cap_, bytes, ncclUint8, recvs_[j].peer,
                             t_.nccl.get(), stream));
  }
  // A non-blocking communicator may still be connecting to peers: wait, with the deadline.
  ncclResult_t rc = ncclGroupEnd();
  if (rc != ncclSuccess && rc != ncclInProgress) {
    fail_round(round, fmt::format("failed in ncclGroupEnd: {} ({})", ncclGetErrorString(rc),
                                  ncclGetLastError(t_.nccl.get())));
  }
  wait_for(nullptr, round);
  mark(round, detail::RoundTrace::kComm, true, stream);
  t_.dev->comm_done[b].record(stream);
}

void ExchangeRun::scatter(size_t round) {
  const size_t b = round % 2;
  cudaStream_t stream = t_.dev->scatter_stream.get();
  // A copy to pageable memory blocks the host until the data is there: wait with the
  // deadline first rather than inside cudaMemcpyAsync, which could block forever.
  if (pageable_recv_) wait_for(&t_.dev->comm_done[b], round);
  EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->comm_done[b].get(), 0));
  mark(round, detail::RoundTrace::kScatter, false, stream);
  for (size_t j = 0; j < recvs_.size(); ++j) {
    Flow& flow = recvs_[j];
    size_t bytes = piece_bytes(flow, round);
    if (bytes == 0) continue;
    const std::byte* src = t_.recv_half(b) + j * piece_cap_;
    flow.cursor.take(bytes, [&](std::byte* dst, size_t n) {
      copy(flow, dst, src, n, stream);
      src += n;
    });
  }
  batch_.flush(stream);
  mark(round, detail::RoundTrace::kScatter, true, stream);
  t_.dev->scattered[b].record(stream);
}

// Polls until `event` has completed (nullptr: until the communicator has taken the last
// group), watching the communicator's error state and the deadline.
void ExchangeRun::wait_for(const Event* event, size_t round) {
  const bool done = runtime::poll_until(
      [&] {
        ncclResult_t state = t_.nccl.async_error();
        if (state != ncclSuccess && state != ncclInProgress) {
          fail_round(round, fmt::format("failed: {} ({})", ncclGetErrorString(state),
                                        ncclGetLastError(t_.nccl.get())));
        }
        return event != nullptr ? event->done() : state == ncclSuccess;
      },
      *deadline_);
  if (!done) {
    fail_round(round, fmt::format("timed out after {}{}", deadline_->timeout_text(),
                                  event != nullptr ? "" : " in ncclGroupEnd"));
  }
}

void ExchangeRun::fail_round(size_t round, const std::string& what) {
  std::set<int> peers;
  for (const auto* flows : {&sends_, &recvs_}) {
    for (const auto& flow : *flows) {
      if (piece_bytes(flow, round) > 0) peers.insert(flow.peer);
    }
  }
  // NcclTransport's guard marks the transport failed and aborts the communicator.
  throw Error(ErrorKind::kComm,
              fmt::format("NCCL exchange {} (round {} of {}) waiting for {} {}", what, round + 1,
                          num_rounds_, peers.size() == 1 ? "peer" : "peers",
                          detail::join_ints(std::vector<int>(peers.begin(), peers.end()))));
}

}  // namespace

NcclTransport::NcclTransport(MPI_Comm comm, int node_rank, const TransportOptions& options)
    : impl_(std::make_unique<Impl>(comm, node_rank, options)) {
  // EPLB_NCCL_SETUP=foreground (docs/CLI.md): finish the set-up here, before the caller
  // reads anything, as before the set-up moved to the background; for side-by-side
  // measurements (bench/e2e_disk.sh). NOTE: the same on every rank (the job's environment).
  const char* mode = std::getenv("EPLB_NCCL_SETUP");
  if (mode != nullptr && std::string_view(mode) == "foreground") impl_->ready();
}

NcclTransport::~NcclTransport() = default;

int NcclTransport::rank() const { return impl_->rank; }
int NcclTransport::size() const { return impl_->size; }
ncclComm_t NcclTransport::comm() const {
  EPLB_ASSERT(!impl_->setup && "NcclTransport::comm() before wait_ready()");
  return impl_->nccl.get();
}
cudaStream_t NcclTransport::stream() const {
  EPLB_ASSERT(impl_->dev && "NcclTransport::stream() before wait_ready()");
  return impl_->dev->comm_stream.get();
}
int NcclTransport::device() const { return impl_->device; }

void NcclTransport::wait_ready() {
  impl_->check_usable();
  impl_->ready();
}

SetupTimes NcclTransport::setup_times() const { return impl_->times; }

void NcclTransport::exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs) {
  impl_->check_usable();
  detail::validate_transfers(sends, recvs, impl_->rank, impl_->size, "NCCL");
  impl_->ready();  // the first exchange waits for the set-up begun by the constructor
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  impl_->guarded([&] { ExchangeRun(*impl_, sends, recvs).run(); });
}

HostBuffer NcclTransport::allocate_host(size_t bytes) {
  if (bytes == 0) return {};
  const auto start = Clock::now();
  HostBuffer buffer;
  if (impl_->setup) {
    // Still setting up: usable at once (the caller reads into it), page-locked by the
    // set-up, which would otherwise hold this thread for the CUDA context and the pinning.
    buffer = detail::allocate_lockable(bytes, impl_->device);
  } else {
    EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
    runtime::PinnedBuffer pinned(bytes);
    buffer = HostBuffer(pinned.release(), bytes, &runtime::PinnedBuffer::free_pinned);
  }
  impl_->times.seconds_host_alloc += seconds_since(start);
  return buffer;
}

runtime::DeviceBuffer NcclTransport::allocate_device(size_t bytes) const {
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return runtime::DeviceBuffer(bytes);
}

runtime::NcclRegistration NcclTransport::register_buffer(const runtime::DeviceBuffer& buffer) {
  EPLB_ASSERT(!impl_->setup && "NcclTransport::register_buffer() before wait_ready()");
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return impl_->guarded([&] {
    return runtime::NcclRegistration(impl_->nccl, buffer.data(), buffer.size(),
                                     runtime::Deadline(impl_->options.timeout));
  });
}

void NcclTransport::group_end(const char* what) {
  impl_->guarded([&] { impl_->nccl.group_end(what, runtime::Deadline(impl_->options.timeout)); });
}

void NcclTransport::wait(cudaStream_t stream, const char* what) {
  impl_->guarded([&] {
    const runtime::Deadline deadline(impl_->options.timeout);
    const bool done = runtime::poll_until(
        [&] {
          cudaError_t rc = cudaStreamQuery(stream);
          if (rc == cudaSuccess) return true;
          if (rc != cudaErrorNotReady) runtime::check_cuda(rc, what, __FILE__, __LINE__);
          ncclResult_t state = impl_->nccl.async_error();
          if (state != ncclSuccess && state != ncclInProgress) {
            throw Error(ErrorKind::kComm,
                        fmt::format("NCCL {} failed: {}", what, ncclGetErrorString(state)));
          }
          return false;
        },
        deadline);
    if (!done) {
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL {} timed out after {}", what, deadline.timeout_text()));
    }
  });
}

void NcclTransport::close() {
  if (impl_->closed || impl_->failed) return;
  // Teardown is collective: a transport that never exchanged finishes its set-up first.
  impl_->ready();
  // Deregister the staging buffer while the communicator is whole: destroying a communicator
  // that still holds a registration crashed inside ncclCommDestroy on 4 H200s (4 processes,
  // NCCL 2.28), where 2 processes did not.
  impl_->staging_registration.reset();
  impl_->guarded([&] { impl_->nccl.close(runtime::Deadline(impl_->options.timeout)); });
  impl_->mpi.close();
  impl_->closed = true;
}

GpuChoice probe_gpu(int node_rank) {
  GpuChoice choice;
  int num_devices = 0;
  if (cudaGetDeviceCount(&num_devices) != cudaSuccess || num_devices <= 0) return choice;
  choice.num_visible = num_devices;
  choice.device = gpu_for(node_rank, num_devices);
  char bus_id[64] = {};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), choice.device) == cudaSuccess) {
    choice.pci_bus_id = bus_id;
  }
  return choice;
}

bool nccl_available(int processes_on_node) {
  int num_devices = 0;
  return cudaGetDeviceCount(&num_devices) == cudaSuccess && num_devices > 0 &&
         num_devices >= processes_on_node;
}

std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int node_rank,
                                               const TransportOptions& options) {
  return std::make_unique<NcclTransport>(comm, node_rank, options);
}

}  // namespace eplb::transport
