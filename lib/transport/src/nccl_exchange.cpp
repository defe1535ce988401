// NCCL backend: the pipeline of one exchange(). NCCL builds only (nccl_stub.cpp stands in
// otherwise); set-up is in nccl_setup.cpp, memory classification in nccl_memory.cpp, the
// round trace in nccl_trace.cpp.
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
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "detail.hpp"
#include "eplb/runtime/batched_copy.hpp"
#include "nccl_impl.hpp"
#include "nccl_trace.hpp"

namespace eplb::transport {

using core::Error;
using core::ErrorKind;
using runtime::Event;

namespace {

// The ramp at both ends of a stream (detail::piece_sizes) stops at pieces of 64 MiB per
// peer: below that, NCCL's per-peer bandwidth drops (to ~70% of its peak at 64 MiB on
// H200s), and at 4 GPUs a ramp down to 21 MiB pieces cost more than it saved.
constexpr size_t kMinRampPiece = size_t{64} << 20;

// One exchange() call: the per-round bookkeeping of the pipeline.
class ExchangeRun {
 public:
  ExchangeRun(NcclTransport::Impl& t, std::span<const Transfer> sends,
              std::span<const Transfer> recvs);
  // `max_peers` as Transport::exchange has it (-1: agreed here).
  void run(int max_peers);

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

void ExchangeRun::run(int known_max_peers) {
  const long long mine = static_cast<long long>(std::max(sends_.size(), recvs_.size()));
  // NOTE: a caller's figure must be the one every process computes; it covers this one's.
  EPLB_ASSERT(known_max_peers < 0 || mine <= known_max_peers);
  const size_t max_peers =
      known_max_peers >= 0 ? static_cast<size_t>(known_max_peers) : t_.agree_max_peers(mine);
  if (max_peers == 0) return;  // nothing moves anywhere
  deadline_.emplace(t_.options.timeout);
  piece_cap_ = t_.dev->half_bytes / max_peers / kPieceAlign * kPieceAlign;
  if (piece_cap_ == 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL staging budget of {} bytes is too small for {} peers",
                            t_.options.device_staging_bytes, max_peers));
  }
  for (auto* flows : {&sends_, &recvs_}) {
    for (auto& flow : *flows) {
      flow.pieces = detail::piece_sizes(flow.total, piece_cap_, kPieceAlign, kMinRampPiece);
      num_rounds_ = std::max(num_rounds_, flow.pieces.size());
    }
  }
  if (num_rounds_ == 0) return;
  trace_ = detail::RoundTrace(t_.options.trace_rounds, num_rounds_);
  // A borrowed communicator's caller: its stream's work (which wrote the segments) first.
  if (t_.caller_stream != nullptr) {
    t_.dev->caller_ready.record(t_.caller_stream);
    EPLB_CUDA_CHECK(
        cudaStreamWaitEvent(t_.dev->gather_stream.get(), t_.dev->caller_ready.get(), 0));
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

void run_exchange(NcclTransport::Impl& impl, std::span<const Transfer> sends,
                  std::span<const Transfer> recvs, int max_peers) {
  ExchangeRun(impl, sends, recvs).run(max_peers);
}

}  // namespace eplb::transport
