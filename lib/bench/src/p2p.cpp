#include "eplb/bench/p2p.hpp"

#include <algorithm>

#include "eplb/bench/timing.hpp"
#include "eplb/runtime/batched_copy.hpp"

namespace eplb::bench {

double median_ms(const P2pSetup& s, const std::function<void()>& enqueue) {
  return 1e3 * median_seconds(s.mpi.group(), 1, s.iterations, [&] {
           enqueue();
           EPLB_CUDA_CHECK(cudaStreamSynchronize(s.net));
           EPLB_CUDA_CHECK(cudaStreamSynchronize(s.copy));
         });
}

void p2p_exchange(const P2pSetup& s, std::byte* send, std::byte* recv, size_t chunk, size_t op) {
  const int n = s.mpi.size(), me = s.mpi.rank();
  if (chunk == 0) chunk = s.per_peer;
  if (op == 0) op = chunk;
  for (size_t start = 0; start < s.per_peer; start += chunk) {
    const size_t len = std::min(chunk, s.per_peer - start);
    EPLB_NCCL_CHECK(ncclGroupStart());
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      for (size_t o = 0; o < len; o += op) {
        const size_t b = std::min(op, len - o);
        const size_t at = static_cast<size_t>(peer) * s.per_peer + start + o;
        EPLB_NCCL_CHECK(ncclSend(send + at, b, ncclUint8, peer, s.comm.get(), s.net));
        EPLB_NCCL_CHECK(ncclRecv(recv + at, b, ncclUint8, peer, s.comm.get(), s.net));
      }
    }
    s.comm.group_end("bench group", runtime::Deadline(s.mpi.timeout()));
  }
}

void p2p_copies(const P2pSetup& s, std::byte* a, std::byte* b, size_t row_bytes, unsigned blocks) {
  const size_t total = 2 * static_cast<size_t>(s.mpi.size() - 1) * s.per_peer;
  runtime::BatchedCopy batch;
  for (size_t o = 0; o < total; o += row_bytes) {
    batch.add(b + o, a + o, std::min(row_bytes, total - o));
  }
  batch.flush(s.copy, blocks);
}

}  // namespace eplb::bench
