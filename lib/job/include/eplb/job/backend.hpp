// Choosing and creating the transport backend.
#pragma once

#include <memory>
#include <string>

#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::job {

enum class Backend { kAuto, kMpi, kNccl };

// "auto", "mpi", "nccl"; throws core::Error(kUsage) otherwise.
Backend parse_backend(const std::string& text);
// "auto", "mpi", "nccl".
const char* to_string(Backend backend);

// Where the rows live while they are exchanged. Disk to disk (`run`, `run --in-place`):
// read into host memory and written from it, so NCCL adds a host -> device copy before
// and a device -> host copy after the network (docs/PERFORMANCE.md).
enum class Workload { kDiskToDisk };

// What the choice depends on. `gpus_usable`: every process has its own usable GPU
// (meaningless when backend_needs_gpu_probe() is false).
struct BackendQuery {
  Backend requested = Backend::kAuto;
  Workload workload = Workload::kDiskToDisk;
  int num_processes = 1;
  int num_nodes = 1;
  bool gpus_usable = false;
  std::string why_no_gpus;  // when !gpus_usable: why (names the rank)
};

struct BackendChoice {
  Backend backend = Backend::kMpi;  // kMpi or kNccl
  std::string reason;               // one line, for the log and `run --json`
  bool operator==(const BackendChoice&) const = default;
};

// Pure. Whether choose_backend() needs `gpus_usable` (the probe is collective and starts
// CUDA on every process): not for --backend mpi, nor for auto on one node disk to disk.
bool backend_needs_gpu_probe(const BackendQuery& query);

// Pure. mpi and nccl as requested (nccl requires gpus_usable: the caller refuses it
// otherwise). auto: MPI for disk to disk with every process on one node (the host path
// beats NCCL's host <-> device copies there); otherwise NCCL when every process has a
// usable GPU, else MPI, with the reason.
BackendChoice choose_backend(const BackendQuery& query);

struct ChosenTransport {
  std::unique_ptr<transport::Transport> transport;
  BackendChoice choice;
};

// Collective. Probes the GPUs only when the choice depends on them, chooses with
// choose_backend() and says which and why (rank 0 prints one line). kNccl without a usable
// GPU is a usage error on every rank.
ChosenTransport make_transport(const runtime::MpiSession& session, Backend backend,
                               Workload workload, const transport::TransportOptions& options);

}  // namespace eplb::job
