#pragma once

#include <mpi.h>

#include <memory>

#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// Collective over `comm` (duplicated internally). Host memory only. Non-blocking
// point-to-point with derived datatypes over the segments (no packing copies); messages
// over options.max_message_bytes are split into several, matched by tag.
std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm, const TransportOptions& options);

}  // namespace eplb::transport
