// Which node each EP rank is on: from a block size (the CLI planner's --ranks-per-node),
// or from the processes' hosts (the real map, as MPI reports it).
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "eplb/core/error.hpp"
#include "eplb/plan/plan.hpp"
#include "senders.hpp"

namespace eplb::plan {

int32_t Topology::num_nodes() const {
  std::vector<int32_t> nodes = node_of_rank;
  std::sort(nodes.begin(), nodes.end());
  return static_cast<int32_t>(std::unique(nodes.begin(), nodes.end()) - nodes.begin());
}

Topology Topology::blocks(int32_t num_ep_ranks, int32_t ranks_per_node) {
  Topology out;
  if (num_ep_ranks <= 0 || ranks_per_node <= 0) return out;
  out.node_of_rank.resize(static_cast<size_t>(num_ep_ranks));
  for (int32_t r = 0; r < num_ep_ranks; ++r) {
    out.node_of_rank[static_cast<size_t>(r)] = r / ranks_per_node;
  }
  return out;
}

Topology topology_of_processes(const ProcessMap& map, const std::vector<int32_t>& node_of_process) {
  if (node_of_process.size() != static_cast<size_t>(std::max(map.num_processes, 0))) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("a node is given for {} processes, but {} processes take part",
                                  node_of_process.size(), map.num_processes));
  }
  Topology out;
  out.node_of_rank.resize(static_cast<size_t>(std::max(map.num_ep_ranks, 0)));
  for (int32_t r = 0; r < map.num_ep_ranks; ++r) {
    const int32_t node = node_of_process[static_cast<size_t>(map.process_of(r))];
    if (node < 0) {
      throw core::Error(
          core::ErrorKind::kUsage,
          fmt::format("process {} has node index {}: it must be >= 0", map.process_of(r), node));
    }
    out.node_of_rank[static_cast<size_t>(r)] = node;
  }
  return out;
}

namespace detail {

void check_topology(const Topology& topology, int32_t num_ep_ranks) {
  if (!topology.known()) return;
  if (topology.node_of_rank.size() != static_cast<size_t>(std::max(num_ep_ranks, 0))) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("the node layout places {} EP ranks, but the placements have {}",
                                  topology.node_of_rank.size(), num_ep_ranks));
  }
  for (size_t r = 0; r < topology.node_of_rank.size(); ++r) {
    if (topology.node_of_rank[r] < 0) {
      throw core::Error(
          core::ErrorKind::kUsage,
          fmt::format("the node layout gives EP rank {} node index {}: it must be >= 0", r,
                      topology.node_of_rank[r]));
    }
  }
}

}  // namespace detail

std::vector<int32_t> node_indices(const std::vector<std::string>& hosts) {
  std::map<std::string, int32_t> index;
  std::vector<int32_t> out;
  out.reserve(hosts.size());
  for (const auto& host : hosts) {
    const auto next = static_cast<int32_t>(index.size());
    out.push_back(index.emplace(host, next).first->second);
  }
  return out;
}

}  // namespace eplb::plan
