// Choosing and creating the transport backend.
#pragma once

#include <memory>
#include <string>

#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::engine {

enum class Backend { kAuto, kMpi, kNccl };

// "auto", "mpi", "nccl"; throws core::Error(kUsage) otherwise.
Backend parse_backend(const std::string& text);

// Collective. kAuto picks NCCL when every process has a usable GPU, else MPI, and says
// which it chose (rank 0 prints). kNccl without a usable GPU is a usage error on every rank.
std::unique_ptr<transport::Transport> make_transport(const runtime::MpiSession& session,
                                                     Backend backend,
                                                     const transport::TransportOptions& options);

}  // namespace eplb::engine
