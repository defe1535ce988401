// What NCCL point-to-point costs in the shapes our exchange could use, measured side by
// side on the same GPUs (one process per GPU, every rank sends to every other rank):
//
//   raw             one ncclSend/ncclRecv per peer of the whole volume (the bench's ceiling)
//   rounds C        the same volume cut into back-to-back groups of C bytes per peer, no
//                   copies: the cost of rounds on their own
//   ops S           one group, the volume as many ops of S bytes per peer: the cost of
//                   sending rows in place instead of packing them
//   copy B blocks   the batched copy kernel alone (pack and unpack of the whole volume, in
//                   6 MiB rows) with B thread blocks: what packing costs without NCCL
//   raw + copy B    raw and that copy kernel at once on two streams: the contention
//   registered      raw from ncclMemAlloc buffers registered with ncclCommRegister
//
//   mpirun -np N bench_p2p [GIB_PER_RANK=4.5] [ITERATIONS=5]
//
// Bandwidth = the busiest rank's bytes sent (= received) / the slowest rank's time, median.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "eplb/bench/p2p.hpp"
#include "eplb/core/error.hpp"
#include "eplb/runtime/cuda.hpp"
#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/mpi_transport.hpp"

namespace {

using eplb::bench::p2p_copies;
using eplb::bench::p2p_exchange;
using eplb::runtime::DeviceBuffer;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kRow = 6 * kMiB;  // a Qwen3-30B-A3B gate/up row

void exchange(const eplb::bench::P2pSetup& s, std::byte* send, std::byte* recv, size_t chunk,
              size_t op) {
  p2p_exchange(s, send, recv, chunk, op);
}

void copies(const eplb::bench::P2pSetup& s, std::byte* a, std::byte* b, unsigned blocks) {
  p2p_copies(s, a, b, kRow, blocks);
}

}  // namespace

int main(int argc, char** argv) {
  eplb::runtime::MpiSession mpi(&argc, &argv, eplb::runtime::kDefaultTimeout);
  const double gib = argc > 1 ? std::atof(argv[1]) : 4.5;
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 5;
  const int n = mpi.size();
  if (n < 2) {
    std::fprintf(stderr, "bench_p2p: run with at least 2 processes (one per GPU)\n");
    return 64;
  }
  try {
    eplb::runtime::select_device(mpi.node_rank());
    const eplb::transport::NcclId id = eplb::transport::agree_nccl_id(mpi.group());
    eplb::runtime::NcclBootstrap boot{{}, mpi.rank(), mpi.size()};
    std::memcpy(&boot.id, id.data(), id.size());
    auto comm = eplb::runtime::NcclComm::start(boot);
    comm.wait_ready("ncclCommInitRankConfig", eplb::runtime::Deadline(mpi.timeout()));
    eplb::runtime::Stream net = eplb::runtime::Stream::with_priority(100);
    eplb::runtime::Stream copy = eplb::runtime::Stream::with_priority(1);
    const size_t per_peer =
        static_cast<size_t>(gib * (1 << 30)) / static_cast<size_t>(n - 1) / 256 * 256;
    const size_t span = per_peer * static_cast<size_t>(n);  // indexed by peer, own slot unused
    eplb::bench::P2pSetup s{mpi, comm, net.get(), copy.get(), per_peer, iterations};
    DeviceBuffer send(span), recv(span), scratch_a(2 * span), scratch_b(2 * span);
    EPLB_CUDA_CHECK(cudaMemset(send.data(), 1, span));
    EPLB_CUDA_CHECK(cudaMemset(scratch_a.data(), 2, 2 * span));
    EPLB_CUDA_CHECK(cudaDeviceSynchronize());

    struct Row {
      std::string name;
      double ms;
    };
    std::vector<Row> rows;
    auto measure = [&](std::string name, const std::function<void()>& fn) {
      rows.push_back({std::move(name), eplb::bench::median_ms(s, fn)});
    };
    measure("raw", [&] { exchange(s, send.data(), recv.data(), 0, 0); });
    for (size_t mib : {128u, 256u, 512u, 1024u, 2048u}) {
      measure(fmt::format("rounds {} MiB", mib),
              [&] { exchange(s, send.data(), recv.data(), mib * kMiB, 0); });
    }
    for (size_t mib : {3u, 6u, 28u, 64u}) {
      measure(fmt::format("ops {} MiB", mib),
              [&] { exchange(s, send.data(), recv.data(), 0, mib * kMiB); });
    }
    for (unsigned blocks : {16u, 32u, 64u, 132u}) {
      measure(fmt::format("copy {} blocks", blocks),
              [&] { copies(s, scratch_a.data(), scratch_b.data(), blocks); });
    }
    for (unsigned blocks : {32u, 64u}) {
      measure(fmt::format("raw + copy {} blocks", blocks), [&] {
        copies(s, scratch_a.data(), scratch_b.data(), blocks);
        exchange(s, send.data(), recv.data(), 0, 0);
      });
    }
    measure("rounds 512 MiB + copy 64 blocks", [&] {
      copies(s, scratch_a.data(), scratch_b.data(), 64);
      exchange(s, send.data(), recv.data(), 512 * kMiB, 0);
    });
    {
      DeviceBuffer rs = DeviceBuffer::for_nccl(span), rr = DeviceBuffer::for_nccl(span);
      if (rs.data() == nullptr || rr.data() == nullptr) {
        throw eplb::core::Error(eplb::core::ErrorKind::kComm, "ncclMemAlloc failed");
      }
      const eplb::runtime::Deadline deadline(mpi.timeout());
      eplb::runtime::NcclRegistration send_reg(comm, rs.data(), span, deadline);
      eplb::runtime::NcclRegistration recv_reg(comm, rr.data(), span, deadline);
      measure("registered raw", [&] { exchange(s, rs.data(), rr.data(), 0, 0); });
      measure("registered rounds 512 MiB",
              [&] { exchange(s, rs.data(), rr.data(), 512 * kMiB, 0); });
    }
    if (mpi.rank() == 0) {
      const double bytes = static_cast<double>(per_peer) * (n - 1);
      std::printf("bench_p2p: %d GPUs, %.2f GiB sent and received per GPU, %zu MiB per peer\n", n,
                  bytes / (1 << 30), per_peer / kMiB);
      std::printf("%-34s %9s %9s %8s\n", "variant", "ms", "GB/s", "vs raw");
      for (const auto& r : rows) {
        std::printf("%-34s %9.3f %9.1f %8.3f\n", r.name.c_str(), r.ms, bytes / r.ms / 1e6,
                    rows[0].ms / r.ms);
      }
      std::printf("(copy rows: GB/s of bytes sent, for 2x that volume copied)\n");
    }
    comm.close(eplb::runtime::Deadline(mpi.timeout()));
  } catch (const eplb::core::Error& e) {
    std::fprintf(stderr, "bench_p2p: rank %d: %s\n", mpi.rank(), e.what());
    mpi.abort_job(1);
  }
  return 0;
}
