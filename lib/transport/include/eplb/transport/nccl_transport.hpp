#pragma once

#include <mpi.h>

#include <memory>

#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// True when this build has the NCCL backend and a CUDA device is usable on this process.
// Local.
bool nccl_available();

// Collective over `comm`: selects the GPU from the node-local rank, creates the NCCL
// communicator (unique id broadcast over MPI). Segments may be pinned host memory
// (allocate_host) or device memory. Throws core::Error(kComm) if NCCL is unavailable.
std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int node_rank,
                                               const TransportOptions& options);

}  // namespace eplb::transport
