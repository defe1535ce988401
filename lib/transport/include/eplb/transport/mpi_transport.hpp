// Transports made from an MPI communicator: the MPI backend (host memory) and the NCCL
// backend bootstrapped over MPI (the command-line tool).
#pragma once

#include <mpi.h>

#include <memory>

#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/nccl_transport.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// Collective over `comm` (duplicated internally). Host memory only. Non-blocking
// point-to-point with derived datatypes over the segments (no packing copies); messages
// over options.max_message_bytes are split into several, matched by tag.
std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm, const TransportOptions& options);

// Collective over `comm`: selects the GPU from the node-local rank (gpu_for), agrees that
// every process has one, broadcasts NCCL's unique id over MPI and makes the NCCL
// transport (make_nccl_transport), whose agreements then go over MPI too, naming silent
// ranks. Throws core::Error(kComm) if NCCL or a GPU is unavailable on any process.
std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int node_rank,
                                               const TransportOptions& options);

// Collective over group.comm: rank 0's new_nccl_id() on every rank (broadcast with a flag, so
// that a failure on rank 0 ends every rank's set-up). Throws core::Error(kComm).
NcclId agree_nccl_id(const runtime::Group& group);

}  // namespace eplb::transport
