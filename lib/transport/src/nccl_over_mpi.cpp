// The NCCL backend bootstrapped over MPI, as the command-line tool makes it: every rank's
// GPU agreed on, rank 0's unique id broadcast, and every later agreement of the transport
// over MPI (whose roll calls name silent ranks). In every build: without NCCL it agrees
// that NCCL is unavailable and says so.
#include <fmt/format.h>

#include <string>

#include "eplb/core/error.hpp"
#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/mpi_transport.hpp"

namespace eplb::transport {
namespace {

using core::Error;
using core::ErrorKind;

class MpiControl final : public Control {
 public:
  MpiControl(MPI_Comm comm, std::chrono::milliseconds timeout)
      : comm_(runtime::MpiComm::dup(comm)), timeout_(timeout) {}
  runtime::Group group() const { return {comm_.get(), timeout_}; }
  std::vector<long long> all_max(const std::vector<long long>& values,
                                 std::string_view phase) override {
    return runtime::all_max(group(), values, phase);
  }
  void close() override { comm_.close(); }

 private:
  runtime::MpiComm comm_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

NcclId agree_nccl_id(const runtime::Group& group) {
  int rank = 0;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  // NOTE: rank 0 broadcasts a success flag with the id, so that a failure there ends
  // every rank's set-up instead of leaving them waiting in the broadcast or in init.
  struct {
    int ok = 0;
    NcclId id{};
  } root;
  if (rank == 0) {
    try {
      root.id = new_nccl_id();
      root.ok = 1;
    } catch (const Error&) {
    }
  }
  runtime::broadcast_bytes(group, std::as_writable_bytes(std::span(&root, 1)),
                           "NCCL communicator set-up (unique id)");
  if (!root.ok) {
    throw Error(ErrorKind::kComm,
                "ncclGetUniqueId(...) failed on rank 0: cannot create the NCCL communicator");
  }
  return root.id;
}

std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int node_rank,
                                               const TransportOptions& options) {
  auto control = std::make_unique<MpiControl>(comm, options.timeout);
  const runtime::Group group = control->group();
  int rank = 0, size = 1;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(group.comm, &size));
  // Every rank's GPU is agreed on first, so that NCCL set-up starts only where it can
  // finish: a rank without a GPU must not leave the others waiting in ncclCommInit.
  std::string problem;
  const GpuChoice gpu = probe_gpu(node_rank);
  if (!nccl_built()) {
    problem = "NCCL backend not available in this build";
  } else if (gpu.device < 0) {
    problem = "no usable CUDA device: none found";
  }
  if (!runtime::all_true(group, problem.empty(), "NCCL transport set-up (GPU and staging)")) {
    if (!problem.empty()) throw Error(ErrorKind::kComm, problem);
    throw Error::reported_elsewhere(ErrorKind::kComm);
  }
  const NcclId id = agree_nccl_id(group);
  return make_nccl_transport(id, rank, size, gpu.device, options, std::move(control));
}

}  // namespace eplb::transport
