#include "eplb/engine/backend.hpp"

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/transport/mpi_transport.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::engine {

Backend parse_backend(const std::string& text) {
  if (text == "auto") return Backend::kAuto;
  if (text == "mpi") return Backend::kMpi;
  if (text == "nccl") return Backend::kNccl;
  throw core::Error(core::ErrorKind::kUsage,
                    "unknown backend '" + text + "' (expected auto, mpi or nccl)");
}

std::unique_ptr<transport::Transport> make_transport(const runtime::MpiSession& session,
                                                     Backend backend,
                                                     const transport::TransportOptions& options) {
  bool gpu_everywhere = false;
  if (backend != Backend::kMpi) {
    gpu_everywhere =
        runtime::all_true(session.group(), transport::nccl_available(session.node_size()),
                          "choosing the backend (GPUs everywhere?)");
  }
  if (backend == Backend::kNccl && !gpu_everywhere) {
    // Every rank knows it (the check above is collective); rank 0 says it once.
    if (session.rank() != 0) throw core::Error::reported_elsewhere(core::ErrorKind::kUsage);
    throw core::Error(core::ErrorKind::kUsage,
                      "--backend nccl: NCCL is not built in, or some node has fewer GPUs than "
                      "processes (one GPU per process); use --backend mpi");
  }
  if (gpu_everywhere) {
    core::log::info("backend: nccl ({} processes, one GPU each)", session.size());
    return transport::make_nccl_transport(session.comm(), session.node_rank(), options);
  }
  core::log::info("backend: mpi ({} processes{})", session.size(),
                  backend == Backend::kAuto ? ", no usable GPU" : "");
  return transport::make_mpi_transport(session.comm(), options);
}

}  // namespace eplb::engine
