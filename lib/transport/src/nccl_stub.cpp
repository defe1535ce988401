// The NCCL backend in a build without NCCL: it only says so.
#include "eplb/core/error.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::transport {
namespace {

[[noreturn]] void unavailable() {
  throw core::Error(core::ErrorKind::kComm, "NCCL backend not available in this build");
}

}  // namespace

bool nccl_built() { return false; }

bool nccl_available(int) { return false; }

GpuChoice probe_gpu(int) { return {}; }

NcclId new_nccl_id() { unavailable(); }

std::unique_ptr<Transport> make_nccl_transport(const NcclId&, int, int, int,
                                               const TransportOptions&, std::unique_ptr<Control>) {
  unavailable();
}

std::unique_ptr<Transport> make_nccl_transport_from_comm(void*, void*, const TransportOptions&) {
  unavailable();
}

}  // namespace eplb::transport
