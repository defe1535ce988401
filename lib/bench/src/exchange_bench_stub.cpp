// The `bench` subcommand in a build without the NCCL backend: it only says so.
#include "eplb/bench/exchange_bench.hpp"
#include "eplb/core/error.hpp"

namespace eplb::bench {

BenchResult run_exchange_bench(const runtime::MpiSession&, const BenchOptions&) {
  throw core::Error(core::ErrorKind::kUsage,
                    "bench needs the NCCL backend, and this build has none (CUDA or NCCL were "
                    "not found when it was configured)");
}

}  // namespace eplb::bench
