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
  std::string title;     // first line, e.g. "'old.json' -> 'new.json'"; any bytes
  std::string subtitle;  // second line, e.g. the tensors
  // Node of each EP rank (Topology::node_of_rank); empty: unknown. With a node layout the
  // matrices show the EP ranks grouped by node (ascending node, then EP rank), so that
  // each node is one block, whatever order the ranks were placed in (--map-by node).
  std::vector<int32_t> node_of_rank;
  std::vector<std::string> node_names;  // optional, per node index: "node N (NAME)"
  LayerTraffic layers;                  // at least one layer, square matrices of one size
};

// Local: a standalone SVG 1.1 document (UTF-8; bytes of the titles that are not valid
// UTF-8 become U+FFFD). Text it always holds, which tests look for: "sender (EP rank)",
// "receiver (EP rank)", "busiest sender: rank R" (the rank sending the most bytes over all
// layers, lowest rank on ties; "nothing moves" when no byte moves), "layer L" under each
// small matrix, "node N" per node when the node layout is known (then also "EP ranks
// grouped by node" if that reorders them). Rank labels and every cell's <title> tooltip
// "rank S -> rank D: BYTES" name the real EP ranks. Throws core::Error(kInternal) on an
// empty or non-square input, or a node layout of another size.
std::string render_traffic_svg(const TrafficPicture& picture);

}  // namespace eplb::plan
