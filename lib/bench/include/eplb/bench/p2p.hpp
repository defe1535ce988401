// bench_p2p's harness: NCCL point-to-point in the shapes our exchange could use, and the
// batched copy kernel, on the same GPUs (bench/bench_p2p.cpp prints the table). NCCL
// builds only (includes cuda.hpp).
#pragma once

#include <cstddef>
#include <functional>

#include "eplb/runtime/cuda.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::bench {

struct P2pSetup {
  const runtime::MpiSession& mpi;
  runtime::NcclComm& comm;
  cudaStream_t net;
  cudaStream_t copy;
  size_t per_peer;  // bytes to and from each peer
  int iterations;
};

// Collective: median over `iterations` runs (after one warm-up) of the slowest rank's
// milliseconds for `enqueue` plus both streams draining (bench::median_seconds).
double median_ms(const P2pSetup& s, const std::function<void()>& enqueue);

// Collective: every rank sends per_peer bytes to and receives them from every other rank,
// in groups of `chunk` bytes per peer (0: the whole volume in one group), each peer's
// share of a group cut into ops of `op` bytes (0: one op). `send` and `recv` hold
// size() * per_peer bytes, indexed by peer.
void p2p_exchange(const P2pSetup& s, std::byte* send, std::byte* recv, size_t chunk, size_t op);

// Local: the pack and unpack of the volume this rank sends and receives, 2 x (n-1) x
// per_peer bytes in rows of `row_bytes`, from `a` to `b`, with `blocks` thread blocks.
void p2p_copies(const P2pSetup& s, std::byte* a, std::byte* b, size_t row_bytes, unsigned blocks);

}  // namespace eplb::bench
