// `run --in-place`: rebalance a checkpoint where it lies, rewriting only the rows whose
// logical expert changes, crash-safe through a journal (eplb/io/journal.hpp,
// docs/RELIABILITY.md "Updates in place").
#pragma once

#include <filesystem>

#include "eplb/engine/rebalance.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::engine {

// Collective over session.comm(): load -> validate (old and new placements must have the
// same ep_size and slots per rank, else kUsage) -> plan -> for each layer (read the source
// rows only, verify them, exchange, fill, verify, journal the changed rows) -> commit every
// rank's journal, agree -> overwrite the changed rows, agree -> new manifest -> remove the
// journal. Rank 0 holds the checkpoint's lock throughout and first finishes an update a
// previous run left behind. A failure before the journals are committed leaves the
// checkpoint as it was; after, the journal stays and the next run that opens the
// checkpoint finishes the update.
RebalanceReport rebalance_in_place(const runtime::MpiSession& session,
                                   const RebalanceOptions& options);

// Collective: when `checkpoint` holds the journal of an interrupted update in place, rank 0
// takes the checkpoint's lock and finishes the update (rolls it forward or back, with a
// warning). A live update holding the lock makes every rank throw kUsage naming it. Every
// command that reads a checkpoint calls this first (run, verify, export).
void finish_interrupted_update(const runtime::MpiSession& session,
                               const std::filesystem::path& checkpoint);

}  // namespace eplb::engine
