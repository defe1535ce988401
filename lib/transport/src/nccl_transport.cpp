// NCCL backend. Built in both configurations: without NCCL it only says so.
//
// With NCCL, exchange() moves the byte streams in rounds. In round k every peer's stream
// contributes its k-th piece (detail::piece_sizes: at most `chunk` bytes, ramped up at the
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

#include "eplb/core/error.hpp"

#if EPLB_HAVE_NCCL
#include <fmt/format.h>

#include <cuda.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

#include "detail.hpp"
#include "eplb/runtime/batched_copy.hpp"
#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/nccl_detail.hpp"
#endif

namespace eplb::transport {

int gpu_for(int node_rank, int num_visible) {
  return num_visible == 1 ? 0 : node_rank % num_visible;
}

#if !EPLB_HAVE_NCCL

bool nccl_available(int) { return false; }

GpuChoice probe_gpu(int) { return {}; }

std::unique_ptr<Transport> make_nccl_transport(MPI_Comm, int, const TransportOptions&) {
  throw core::Error(core::ErrorKind::kComm, "NCCL backend not available in this build");
}

#else

namespace {

using core::Error;
using core::ErrorKind;
using runtime::Event;

// Every piece but a stream's last is a 256-byte multiple, which keeps every peer's staging
// offset aligned for NCCL's and the copy kernel's wide accesses.
constexpr size_t kChunkAlign = 256;
// The ramp at both ends of a stream (detail::piece_sizes) stops at pieces of 64 MiB per
// peer: below that, NCCL's per-peer bandwidth drops (to ~70% of its peak at 64 MiB on
// H200s), and at 4 GPUs a ramp down to 21 MiB pieces cost more than it saved.
constexpr size_t kMinRampPiece = size_t{64} << 20;

enum class MemKind { kThisDevice, kPageable, kOther };

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

// Classifies segment addresses, one driver query per device allocation rather than per
// segment: a rebalance has thousands of segments in a few dozen allocations, and one
// cudaPointerGetAttributes each took a measurable part of a millisecond per exchange.
class MemoryClassifier {
 public:
  explicit MemoryClassifier(int device) : device_(device) {}
  MemKind kind(const std::byte* p) {
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

 private:
  struct Range {
    const std::byte* begin;
    const std::byte* end;
  };
  int device_;
  std::vector<Range> ranges_;  // device allocations of this GPU seen so far
};

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

}  // namespace

// Per-process resources: device, staging halves, streams, events, communicators.
struct NcclTransport::Impl {
  Impl(MPI_Comm comm, int node_rank, const TransportOptions& opts);
  std::byte* send_half(size_t b) { return dev->staging.data() + b * dev->half_bytes; }
  std::byte* recv_half(size_t b) { return dev->staging.data() + (2 + b) * dev->half_bytes; }
  void check_usable() const;
  size_t agree_max_peers(long long local, const detail::Deadline& deadline);

  TransportOptions options;
  runtime::MpiComm mpi;
  int rank = 0;
  int size = 1;
  int device = 0;
  bool failed = false;
  // Outlive a timed-out MPI_Iallreduce, which may still write them.
  long long agree_in = 0, agree_out = 0;
  std::optional<DeviceResources> dev;
  runtime::NcclComm nccl;  // aborted before the buffers it may use are freed
  runtime::NcclRegistration staging_registration;  // dropped before the communicator
};

NcclTransport::Impl::Impl(MPI_Comm comm, int node_rank, const TransportOptions& opts)
    : options(opts), mpi(runtime::MpiComm::dup(comm)) {
  EPLB_MPI_CHECK(MPI_Comm_rank(mpi.get(), &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(mpi.get(), &size));
  size_t half_bytes = options.max_staging_bytes / 4 / kChunkAlign * kChunkAlign;
  if (half_bytes == 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL staging budget of {} bytes is too small (at least {} needed)",
                            options.max_staging_bytes, 4 * kChunkAlign));
  }
  // Local setup first, agreed on by every rank, so that NCCL setup starts only where it
  // can finish: a rank without a GPU must not leave the others waiting in ncclCommInit.
  std::optional<Error> local_error;
  try {
    device = runtime::select_device(node_rank);
    dev.emplace();
    dev->half_bytes = half_bytes;
    dev->staging = runtime::DeviceBuffer::for_nccl(4 * half_bytes);
    if (!dev->staging.data()) dev->staging = runtime::DeviceBuffer(4 * half_bytes);
  } catch (const Error& e) {
    local_error = e;
  }
  if (!runtime::all_true(mpi.get(), !local_error)) {
    if (local_error) throw *local_error;
    throw Error::reported_elsewhere(ErrorKind::kComm);
  }
  nccl = runtime::NcclComm::create(mpi.get(), options.timeout);
  // NOTE: NCCL needs registered buffers on both ends of an operation or on neither.
  if (runtime::all_true(mpi.get(), dev->staging.from_nccl())) {
    staging_registration = runtime::NcclRegistration(nccl, dev->staging.data(), dev->staging.size(),
                                                     runtime::deadline_after(options.timeout));
  }
}

void NcclTransport::Impl::check_usable() const {
  if (!nccl && !failed) throw Error(ErrorKind::kInternal, "internal error: NCCL use after close()");
  if (failed) {
    throw Error(ErrorKind::kComm, "NCCL transport is unusable after an earlier failed exchange");
  }
}

// NOTE: the sender and the receiver of a pair must cut its stream into the same pieces, so
// the piece cap (chunk_) derives from the largest peer count of any rank, agreed here.
size_t NcclTransport::Impl::agree_max_peers(long long local, const detail::Deadline& deadline) {
  agree_in = local;
  MPI_Request req = MPI_REQUEST_NULL;
  EPLB_MPI_CHECK(MPI_Iallreduce(&agree_in, &agree_out, 1, MPI_LONG_LONG, MPI_MAX, mpi.get(), &req));
  auto idle_since = std::chrono::steady_clock::now();
  for (int done = 0;;) {
    EPLB_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return static_cast<size_t>(agree_out);
    if (deadline.expired()) {
      // The request stays pending (a collective cannot be cancelled); its buffers are
      // members, so a late completion writes into live memory.
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL exchange timed out after {} waiting for every rank to "
                              "start the exchange (MPI_Iallreduce)",
                              deadline.timeout_text()));
    }
    detail::poll_pause(idle_since);
  }
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
    std::vector<size_t> pieces;  // bytes per round (detail::piece_sizes)
    std::vector<MemKind> kinds;  // per segment
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
  // TransportOptions::trace_rounds: timing events around each phase of each round.
  enum Phase { kGather, kComm, kScatter };
  void mark(size_t round, Phase phase, bool end, cudaStream_t stream);
  void print_trace();
  std::vector<Event> trace_;  // [round][phase][start, end]

  NcclTransport::Impl& t_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  double setup_ms_ = 0;  // host time from the call to the first gather (for the trace)
  double flows_ms_ = 0;  // of which classifying the segments
  MemoryClassifier classifier_{t_.device};
  detail::Deadline deadline_;
  std::vector<Flow> sends_, recvs_;
  bool pageable_recv_ = false;
  size_t chunk_ = 0;
  size_t num_rounds_ = 0;
  runtime::BatchedCopy batch_;
};

void ExchangeRun::copy(const Flow& flow, std::byte* dst, const std::byte* src, size_t n,
                       cudaStream_t s) {
  // NOTE: called from inside the cursor's take(), so current_index() is the piece's segment.
  if (flow.kinds[flow.cursor.current_index()] == MemKind::kThisDevice) {
    batch_.add(dst, src, n);
  } else {
    EPLB_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, s));
  }
}

ExchangeRun::ExchangeRun(NcclTransport::Impl& t, std::span<const Transfer> sends,
                         std::span<const Transfer> recvs)
    : t_(t), deadline_(t.options.timeout), sends_(make_flows(sends)), recvs_(make_flows(recvs)) {
  for (const auto& flow : recvs_) {
    pageable_recv_ |= std::ranges::count(flow.kinds, MemKind::kPageable) > 0;
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
      flow.kinds.push_back(seg.bytes > 0 ? classifier_.kind(seg.data) : MemKind::kOther);
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
      t_.agree_max_peers(static_cast<long long>(std::max(sends_.size(), recvs_.size())), deadline_);
  if (max_peers == 0) return;  // nothing moves anywhere
  chunk_ = t_.dev->half_bytes / max_peers / kChunkAlign * kChunkAlign;
  if (chunk_ == 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL staging budget of {} bytes is too small for {} peers",
                            t_.options.max_staging_bytes, max_peers));
  }
  for (auto* flows : {&sends_, &recvs_}) {
    for (auto& flow : *flows) {
      flow.pieces = detail::piece_sizes(flow.total, chunk_, kChunkAlign, kMinRampPiece);
      num_rounds_ = std::max(num_rounds_, flow.pieces.size());
    }
  }
  if (num_rounds_ == 0) return;
  if (t_.options.trace_rounds) {
    for (size_t i = 0; i < num_rounds_ * 6; ++i) trace_.emplace_back(true);
  }
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
  if (!trace_.empty()) print_trace();
}

void ExchangeRun::mark(size_t round, Phase phase, bool end, cudaStream_t stream) {
  if (!trace_.empty())
    trace_[round * 6 + static_cast<size_t>(phase) * 2 + (end ? 1 : 0)].record(stream);
}

// Rank 0 only; every event has completed (run() waited for the last scatter).
void ExchangeRun::print_trace() {
  if (t_.rank != 0) return;
  auto at = [&](size_t i) {
    float ms = 0;
    EPLB_CUDA_CHECK(cudaEventElapsedTime(&ms, trace_[0].get(), trace_[i].get()));
    return ms;
  };
  std::string text = fmt::format(
      "trace: rank 0, {} rounds of at most {} bytes per peer, {:.3f} ms of host set-up ({:.3f} "
      "of it classifying segments), then ms since the first gather began\n",
      num_rounds_, chunk_, setup_ms_, flows_ms_);
  for (size_t k = 0; k < num_rounds_; ++k) {
    const size_t e = k * 6;
    text += fmt::format(
        "trace: round {:3}  gather {:8.3f} {:8.3f}  send/recv {:8.3f} {:8.3f}  scatter {:8.3f} "
        "{:8.3f}\n",
        k, at(e), at(e + 1), at(e + 2), at(e + 3), at(e + 4), at(e + 5));
  }
  std::fputs(text.c_str(), stderr);
}

void ExchangeRun::gather(size_t round) {
  const size_t b = round % 2;
  cudaStream_t stream = t_.dev->gather_stream.get();
  // NOTE: the send half is free again once the NCCL group two rounds back has read it.
  if (round >= 2) EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->comm_done[b].get(), 0));
  mark(round, kGather, false, stream);
  for (size_t i = 0; i < sends_.size(); ++i) {
    Flow& flow = sends_[i];
    size_t bytes = piece_bytes(flow, round);
    if (bytes == 0) continue;
    std::byte* dst = t_.send_half(b) + i * chunk_;
    flow.cursor.take(bytes, [&](std::byte* src, size_t n) {
      copy(flow, dst, src, n, stream);
      dst += n;
    });
  }
  batch_.flush(stream);
  mark(round, kGather, true, stream);
  t_.dev->gathered[b].record(stream);
}

void ExchangeRun::communicate(size_t round) {
  const size_t b = round % 2;
  cudaStream_t stream = t_.dev->comm_stream.get();
  EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->gathered[b].get(), 0));
  // NOTE: the receive half is free again once the scatter two rounds back has read it.
  if (round >= 2) EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->scattered[b].get(), 0));
  mark(round, kComm, false, stream);
  bool any = false;
  for (const auto* flows : {&sends_, &recvs_}) {
    for (const auto& flow : *flows) any |= piece_bytes(flow, round) > 0;
  }
  if (!any) {  // this rank has finished early: nothing to enqueue, keep the events chained
    mark(round, kComm, true, stream);
    t_.dev->comm_done[b].record(stream);
    return;
  }
  EPLB_NCCL_CHECK(ncclGroupStart());
  for (size_t i = 0; i < sends_.size(); ++i) {
    size_t bytes = piece_bytes(sends_[i], round);
    if (bytes == 0) continue;
    EPLB_NCCL_CHECK(ncclSend(t_.send_half(b) + i * chunk_, bytes, ncclUint8, sends_[i].peer,
                             t_.nccl.get(), stream));
  }
  for (size_t j = 0; j < recvs_.size(); ++j) {
    size_t bytes = piece_bytes(recvs_[j], round);
    if (bytes == 0) continue;
    EPLB_NCCL_CHECK(ncclRecv(t_.recv_half(b) + j * chunk_, bytes, ncclUint8, recvs_[j].peer,
                             t_.nccl.get(), stream));
  }
  // A non-blocking communicator may still be connecting to peers: wait, with the deadline.
  ncclResult_t rc = ncclGroupEnd();
  if (rc != ncclSuccess && rc != ncclInProgress) {
    fail_round(round, fmt::format("failed in ncclGroupEnd: {} ({})", ncclGetErrorString(rc),
                                  ncclGetLastError(t_.nccl.get())));
  }
  wait_for(nullptr, round);
  mark(round, kComm, true, stream);
  t_.dev->comm_done[b].record(stream);
}

void ExchangeRun::scatter(size_t round) {
  const size_t b = round % 2;
  cudaStream_t stream = t_.dev->scatter_stream.get();
  // A copy to pageable memory blocks the host until the data is there: wait with the
  // deadline first rather than inside cudaMemcpyAsync, which could block forever.
  if (pageable_recv_) wait_for(&t_.dev->comm_done[b], round);
  EPLB_CUDA_CHECK(cudaStreamWaitEvent(stream, t_.dev->comm_done[b].get(), 0));
  mark(round, kScatter, false, stream);
  for (size_t j = 0; j < recvs_.size(); ++j) {
    Flow& flow = recvs_[j];
    size_t bytes = piece_bytes(flow, round);
    if (bytes == 0) continue;
    const std::byte* src = t_.recv_half(b) + j * chunk_;
    flow.cursor.take(bytes, [&](std::byte* dst, size_t n) {
      copy(flow, dst, src, n, stream);
      src += n;
    });
  }
  batch_.flush(stream);
  mark(round, kScatter, true, stream);
  t_.dev->scattered[b].record(stream);
}

// Polls until `event` has completed (nullptr: until the communicator has taken the last
// group), watching the communicator's error state and the deadline.
void ExchangeRun::wait_for(const Event* event, size_t round) {
  auto idle_since = std::chrono::steady_clock::now();
  for (;;) {
    ncclResult_t state = t_.nccl.async_error();
    if (state != ncclSuccess && state != ncclInProgress) {
      fail_round(round, fmt::format("failed: {} ({})", ncclGetErrorString(state),
                                    ncclGetLastError(t_.nccl.get())));
    }
    if (event != nullptr ? event->done() : state == ncclSuccess) return;
    if (deadline_.expired()) {
      fail_round(round, fmt::format("timed out after {}{}", deadline_.timeout_text(),
                                    event != nullptr ? "" : " in ncclGroupEnd"));
    }
    detail::poll_pause(idle_since);
  }
}

void ExchangeRun::fail_round(size_t round, const std::string& what) {
  std::set<int> peers;
  for (const auto* flows : {&sends_, &recvs_}) {
    for (const auto& flow : *flows) {
      if (piece_bytes(flow, round) > 0) peers.insert(flow.peer);
    }
  }
  t_.nccl.abort();
  throw Error(ErrorKind::kComm,
              fmt::format("NCCL exchange {} (round {} of {}) waiting for {} {}", what, round + 1,
                          num_rounds_, peers.size() == 1 ? "peer" : "peers",
                          detail::join_ints(std::vector<int>(peers.begin(), peers.end()))));
}

}  // namespace

NcclTransport::NcclTransport(MPI_Comm comm, int node_rank, const TransportOptions& options)
    : impl_(std::make_unique<Impl>(comm, node_rank, options)) {}

NcclTransport::~NcclTransport() = default;

int NcclTransport::rank() const { return impl_->rank; }
int NcclTransport::size() const { return impl_->size; }
ncclComm_t NcclTransport::comm() const { return impl_->nccl.get(); }
cudaStream_t NcclTransport::stream() const { return impl_->dev->comm_stream.get(); }
int NcclTransport::device() const { return impl_->device; }

void NcclTransport::exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs) {
  impl_->check_usable();
  detail::validate_transfers(sends, recvs, impl_->rank, impl_->size, "NCCL");
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  try {
    ExchangeRun(*impl_, sends, recvs).run();
  } catch (...) {
    // Peers may be blocked in a group that will never complete: abort, never wait.
    impl_->failed = true;
    impl_->nccl.abort();
    throw;
  }
}

HostBuffer NcclTransport::allocate_host(size_t bytes) {
  if (bytes == 0) return {};
  runtime::PinnedBuffer pinned(bytes);
  return HostBuffer(pinned.release(), bytes, &runtime::PinnedBuffer::free_pinned);
}

runtime::DeviceBuffer NcclTransport::allocate_device(size_t bytes) const {
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return runtime::DeviceBuffer(bytes);
}

runtime::NcclRegistration NcclTransport::register_buffer(const runtime::DeviceBuffer& buffer) {
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return runtime::NcclRegistration(impl_->nccl, buffer.data(), buffer.size(),
                                   runtime::deadline_after(impl_->options.timeout));
}

void NcclTransport::group_end(const char* what) {
  try {
    impl_->nccl.group_end(what, runtime::deadline_after(impl_->options.timeout));
  } catch (...) {
    impl_->failed = true;  // group_end aborted the communicator
    throw;
  }
}

void NcclTransport::wait(cudaStream_t stream, const char* what) {
  detail::Deadline deadline(impl_->options.timeout);
  auto idle_since = std::chrono::steady_clock::now();
  for (;;) {
    cudaError_t rc = cudaStreamQuery(stream);
    if (rc == cudaSuccess) return;
    if (rc != cudaErrorNotReady) {
      impl_->failed = true;
      impl_->nccl.abort();
      runtime::check_cuda(rc, what, __FILE__, __LINE__);
    }
    ncclResult_t state = impl_->nccl.async_error();
    if (state != ncclSuccess && state != ncclInProgress) {
      impl_->failed = true;
      impl_->nccl.abort();
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL {} failed: {}", what, ncclGetErrorString(state)));
    }
    if (deadline.expired()) {
      impl_->failed = true;
      impl_->nccl.abort();
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL {} timed out after {}", what, deadline.timeout_text()));
    }
    detail::poll_pause(idle_since);
  }
}

void NcclTransport::close() {
  if (!impl_->nccl) return;
  impl_->nccl.close(runtime::deadline_after(impl_->options.timeout));
  impl_->mpi.close();
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

#endif  // EPLB_HAVE_NCCL

}  // namespace eplb::transport
