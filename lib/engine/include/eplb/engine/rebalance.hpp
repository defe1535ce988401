// The main job: move a checkpoint from the old placement to the new one, disk to disk.
#pragma once

#include <cstdint>

#include "eplb/engine/rebalance_types.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::engine {

// Local: the node of every EP rank, identical on every process without communicating
// (the session gathered the hosts once at start-up). `ranks_per_node` if positive
// (contiguous blocks: the user's override), else the real map: EP rank -> process (a
// ProcessMap of `num_ep_ranks` over the session's processes; 0: one EP rank each) ->
// that process's node.
plan::Topology agreed_topology(const runtime::MpiSession& session, int32_t ranks_per_node,
                               int32_t num_ep_ranks = 0);

// Collective over session.comm(): load -> validate -> plan -> for each layer (read,
// verify, exchange, fill, verify, write) -> commit. Invalid input is reported by the
// rank that found it, before any data moves, and every rank throws the same error kind;
// nothing is left under the output name or in staging. During the exchange a transport
// failure throws core::Error(kComm), which main turns into a job abort.
RebalanceReport rebalance(const runtime::MpiSession& session, const RebalanceOptions& options);

}  // namespace eplb::engine
