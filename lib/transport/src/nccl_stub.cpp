// The NCCL backend in a build without NCCL: it only says so.
#include "eplb/core/error.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::transport {

bool nccl_available(int) { return false; }

GpuChoice probe_gpu(int) { return {}; }

std::unique_ptr<Transport> make_nccl_transport(MPI_Comm, int, const TransportOptions&) {
  throw core::Error(core::ErrorKind::kComm, "NCCL backend not available in this build");
}

}  // namespace eplb::transport
