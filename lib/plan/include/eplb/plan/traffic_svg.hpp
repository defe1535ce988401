// A picture of a plan's traffic (`plan --svg FILE`): the EP rank x EP rank matrix of bytes
// moved, summed over layers, with node boundaries, the busiest sender marked and its row
// total, and a strip of small per-layer matrices on one shared colour scale.
//
// Pure and local, like the rest of lib/plan: the SVG is a string; the caller writes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eplb/plan/plan.hpp"

namespace eplb::plan {

// bytes[layer][src EP rank][dst EP rank]
using LayerTraffic = std::vector<std::vector<std::vector<int64_t>>>;

// Local: per layer, the bytes each EP rank sends to each other one: every message's
// logical experts times `bytes_per_expert` (all of an expert's tensors).
LayerTraffic traffic_bytes(const Plan& plan, int64_t bytes_per_expert);

struct TrafficPicture {
  std::string title;           // first line, e.g. "'old.json' -> 'new.json'"; any bytes
  std::string subtitle;        // second line, e.g. the tensors
  int32_t ranks_per_node = 0;  // node boundaries every this many EP ranks; 0: unknown
  LayerTraffic layers;         // at least one layer, square matrices of one size
};

// Local: a standalone SVG 1.1 document (UTF-8; bytes of the titles that are not valid
// UTF-8 become U+FFFD). Text it always holds, which tests look for: "sender (EP rank)",
// "receiver (EP rank)", "busiest sender: rank R" (the rank sending the most bytes over all
// layers, lowest rank on ties; "nothing moves" when no byte moves), "layer L" under each
// small matrix, "node N" per node when ranks_per_node is known. Every cell has a <title>
// tooltip "rank S -> rank D: BYTES". Throws core::Error(kInternal) on an empty or
// non-square input.
std::string render_traffic_svg(const TrafficPicture& picture);

}  // namespace eplb::plan
