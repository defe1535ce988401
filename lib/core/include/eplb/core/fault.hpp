// Injected faults for the reliability tests (docs/RELIABILITY.md). Harmless when the
// variables are unset, which is always the case outside the tests.
//
//   EPLB_TEST_KILL_AT=PHASE[:RANK]  the process (of that MPI rank, default any) kills itself
//                                   with SIGKILL when it reaches PHASE, as a crash would.
//
// Local: acts on the calling process only.
#pragma once

#include <string_view>

namespace eplb::core::fault {

// Phases, in the order a run reaches them: "staging" (staging directory created),
// "shard-open" (this process's output shards created), "layer-<N>" (layer N written),
// "written" (every shard closed), "manifest" (manifest written, before the renames),
// "renamed-old" (--force: the previous output moved aside), "committed" (the new output
// in place, the previous not yet removed).
void kill_point(std::string_view phase);

}  // namespace eplb::core::fault
