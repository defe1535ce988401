// job::choose_backend: which transport `--backend` gives, and why.
#include <catch2/catch.hpp>

#include "eplb/job/backend.hpp"

namespace {

using eplb::job::Backend;
using eplb::job::backend_needs_gpu_probe;
using eplb::job::BackendQuery;
using eplb::job::choose_backend;
using eplb::job::Workload;

BackendQuery query(Backend requested, int num_processes, int num_nodes, bool gpus_usable) {
  return {requested, Workload::kDiskToDisk, num_processes,
          num_nodes, gpus_usable,           "rank 1 on node07 sees no usable GPU"};
}

}  // namespace

TEST_CASE("auto on one node, disk to disk: MPI, whatever the GPUs, without probing them") {
  for (bool gpus : {true, false}) {
    const auto q = query(Backend::kAuto, 2, 1, gpus);
    CHECK_FALSE(backend_needs_gpu_probe(q));
    const auto c = choose_backend(q);
    CHECK(c.backend == Backend::kMpi);
    CHECK(c.reason ==
          "auto: all 2 processes on one node; disk to disk the host path is faster than NCCL's "
          "host<->device copies (docs/PERFORMANCE.md)");
  }
  CHECK(choose_backend(query(Backend::kAuto, 1, 1, true))
            .reason.starts_with("auto: the only process on one node;"));
}

TEST_CASE("auto across nodes: NCCL where every process has a GPU, else MPI and why") {
  auto q = query(Backend::kAuto, 16, 2, true);
  CHECK(backend_needs_gpu_probe(q));
  CHECK(choose_backend(q) ==
        eplb::job::BackendChoice{Backend::kNccl, "auto: 16 processes, one GPU each on 2 nodes"});
  q.gpus_usable = false;
  CHECK(choose_backend(q) ==
        eplb::job::BackendChoice{Backend::kMpi,
                                 "auto: no usable GPU: rank 1 on node07 sees no "
                                 "usable GPU"});
}

TEST_CASE("an explicit backend is taken as asked, on any number of nodes") {
  for (int nodes : {1, 4}) {
    const auto mpi = query(Backend::kMpi, 8, nodes, true);
    CHECK_FALSE(backend_needs_gpu_probe(mpi));
    CHECK(choose_backend(mpi) ==
          eplb::job::BackendChoice{Backend::kMpi, "requested with --backend mpi"});
    // nccl is checked against the GPUs (the caller refuses it without them), even on one node.
    const auto nccl = query(Backend::kNccl, 8, nodes, true);
    CHECK(backend_needs_gpu_probe(nccl));
    CHECK(choose_backend(nccl) ==
          eplb::job::BackendChoice{Backend::kNccl,
                                   "requested with --backend nccl; 8 processes, one GPU each"});
  }
}

TEST_CASE("backend names round-trip") {
  for (Backend b : {Backend::kAuto, Backend::kMpi, Backend::kNccl}) {
    CHECK(eplb::job::parse_backend(eplb::job::to_string(b)) == b);
  }
}
