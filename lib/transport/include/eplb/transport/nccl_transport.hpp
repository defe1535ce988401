#pragma once

#include <mpi.h>

#include <memory>

#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// True when this build has the NCCL backend and this node has a CUDA device for each of
// the `processes_on_node` processes sharing it (NCCL refuses two ranks on one GPU). Local.
bool nccl_available(int processes_on_node = 1);

// Collective over `comm`: selects the GPU from the node-local rank, creates the NCCL
// communicator (unique id broadcast over MPI). Segments may be pinned host memory
// (allocate_host) or device memory. Throws core::Error(kComm) if NCCL is unavailable.
// The concrete type (communicator, stream, device buffers) is in nccl_detail.hpp.
std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int node_rank,
                                               const TransportOptions& options);

}  // namespace eplb::transport
