#include <fmt/format.h>

#include <algorithm>

#include "eplb/core/error.hpp"
#include "eplb/plan/plan.hpp"
#include "senders.hpp"

namespace eplb::plan {
namespace {

// Distinct logical experts that `rows` needs and holds in no old row (kReceived/kCopy):
// counted from the rows, not the messages, so a plan that moves too much shows it.
int64_t distinct_lacking(const std::vector<RowPlan>& rows, std::vector<int32_t>& scratch) {
  scratch.clear();
  for (const RowPlan& row : rows) {
    if (row.source == RowSource::kReceived || row.source == RowSource::kCopy) {
      scratch.push_back(row.expert_id);
    }
  }
  std::sort(scratch.begin(), scratch.end());
  return std::unique(scratch.begin(), scratch.end()) - scratch.begin();
}

void count_rows(const LayerPlan& layer, PlanStats& stats, std::vector<int32_t>& scratch) {
  for (size_t rank = 0; rank < layer.rows.size(); ++rank) {
    RankStats& rs = stats.ranks[rank];
    for (const RowPlan& row : layer.rows[rank]) {
      rs.rows_unchanged += row.source == RowSource::kUnchanged;
      rs.rows_local += row.source == RowSource::kLocal || row.source == RowSource::kCopy;
      rs.rows_empty += row.source == RowSource::kEmpty;
    }
    stats.min_experts_required += distinct_lacking(layer.rows[rank], scratch);
  }
}

void count_messages(const LayerPlan& layer, const Topology& topology, PlanStats& stats,
                    std::vector<int64_t>& sent_in_layer) {
  std::fill(sent_in_layer.begin(), sent_in_layer.end(), 0);
  for (const Message& m : layer.messages) {
    const auto num = static_cast<int64_t>(m.expert_ids.size());
    RankStats& src = stats.ranks[detail::idx(m.src_rank)];
    RankStats& dst = stats.ranks[detail::idx(m.dst_rank)];
    src.experts_sent += num;
    src.messages_sent += 1;
    dst.experts_received += num;
    dst.messages_received += 1;
    stats.traffic[detail::idx(m.src_rank)][detail::idx(m.dst_rank)] += num;
    stats.experts_moved += num;
    sent_in_layer[detail::idx(m.src_rank)] += num;
    if (topology.known() && topology.node_of(m.src_rank) != topology.node_of(m.dst_rank)) {
      stats.inter_node_experts += num;
    }
  }
  if (!sent_in_layer.empty()) {
    stats.busiest_sender_experts += *std::max_element(sent_in_layer.begin(), sent_in_layer.end());
  }
}

// Block distribution: process p hosts EP ranks [p*k, p*k+k), k = ceil(ranks / processes).
int32_t ranks_per_process(const ProcessMap& map) {
  if (map.num_ep_ranks <= 0 || map.num_processes <= 0) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("cannot map {} EP ranks onto {} processes: both must be positive",
                                  map.num_ep_ranks, map.num_processes));
  }
  return (map.num_ep_ranks + map.num_processes - 1) / map.num_processes;
}

void check_index(int32_t idx, int32_t count, const char* what) {
  if (idx < 0 || idx >= count) {
    throw core::Error(core::ErrorKind::kInternal,
                      fmt::format("internal error: {} {} is outside [0, {})", what, idx, count));
  }
}

}  // namespace

PlanStats summarize(const Plan& plan, const Topology& topology) {
  detail::check_topology(topology, plan.num_ep_ranks());
  const auto num_ranks = static_cast<size_t>(std::max(plan.num_ep_ranks(), 0));
  PlanStats stats;
  stats.ranks.resize(num_ranks);
  stats.traffic.assign(num_ranks, std::vector<int64_t>(num_ranks, 0));
  std::vector<int32_t> scratch;
  std::vector<int64_t> sent_in_layer(num_ranks, 0);
  for (const LayerPlan& layer : plan.layers) {
    EPLB_ASSERT(layer.rows.size() <= num_ranks);
    count_rows(layer, stats, scratch);
    count_messages(layer, topology, stats, sent_in_layer);
  }
  return stats;
}

int32_t ProcessMap::process_of(int32_t ep_rank) const {
  const int32_t per_process = ranks_per_process(*this);
  check_index(ep_rank, num_ep_ranks, "EP rank");
  return ep_rank / per_process;
}

std::vector<int32_t> ProcessMap::ep_ranks_of(int32_t process) const {
  const int32_t per_process = ranks_per_process(*this);
  check_index(process, num_processes, "process");
  // With more processes than a block fills, the last processes host no EP rank.
  std::vector<int32_t> ranks;
  const int32_t end = std::min(num_ep_ranks, (process + 1) * per_process);
  for (int32_t r = process * per_process; r < end; ++r) ranks.push_back(r);
  return ranks;
}

}  // namespace eplb::plan
