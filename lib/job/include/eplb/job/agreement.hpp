// Collective error agreement: before data moves (and once per layer while it moves), the
// processes agree whether everyone is fine, so that a problem on one rank ends every rank
// cleanly with the same exit code instead of leaving peers blocked in a collective.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "eplb/core/error.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::job {

// Collective over group.comm. Each rank passes the problems it found; a rank with problems
// prints them itself (so each message carries the right rank tag). If any rank had a
// problem, every rank throws: the worst kind (highest exit code) wins and the error is
// marked reported. `phase` names the agreement in a timeout's message.
void agree(const runtime::Group& group, const core::ProblemList& local, std::string_view phase);

// Collective, for problems every rank finds identically (e.g. placement validation):
// only rank 0 prints them; then as agree().
void agree_identical(const runtime::Group& group, const core::ProblemList& local,
                     std::string_view phase);

// Local: runs `step`, turning a core::Error it throws into problems of `out` (other
// exceptions become kInternal problems). Returns true when the step succeeded.
bool capture(core::ProblemList& out, const std::function<void()>& step);

// Local: runs `step`, a phase of layer `layer_idx` (its exchange). A core::Error it throws
// is thrown again with "layer N: " before each problem: the transport names the peers, the
// layer is the caller's to add. An error already reported elsewhere passes unchanged.
void at_layer(int32_t layer_idx, const std::function<void()>& step);

}  // namespace eplb::job
