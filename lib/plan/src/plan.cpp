#include "eplb/plan/plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <span>
#include <tuple>

#include "eplb/core/error.hpp"
#include "eplb/core/ids.hpp"
#include "senders.hpp"

namespace eplb::plan {
namespace {

using detail::idx;
using placement::Placement;

// The shape checks make_plan needs before indexing; placement validation proper (with
// JSON locations) is lib/placement's job, this only keeps make_plan memory-safe.
void check_shape(const Placement& p, const char* which, core::ProblemList& problems) {
  if (p.ep_size <= 0 || p.num_slots_per_rank <= 0) {
    problems.add(fmt::format("{} placement: ep_size {} and num_slots_per_rank {} must be positive",
                             which, p.ep_size, p.num_slots_per_rank));
    return;
  }
  const auto num_slots = static_cast<size_t>(p.num_slots());
  for (int32_t layer_idx = 0; layer_idx < p.num_layers(); ++layer_idx) {
    const auto& map = p.physical_to_logical_map[idx(layer_idx)];
    if (map.size() != num_slots) {
      problems.add(fmt::format("{} placement, layer {}: {} slots, expected ep_size {} x {} = {}",
                               which, layer_idx, map.size(), p.ep_size, p.num_slots_per_rank,
                               num_slots));
      continue;
    }
    for (size_t slot = 0; slot < map.size(); ++slot) {
      const bool too_high = p.num_logical_experts > 0 && map[slot] >= p.num_logical_experts;
      if (map[slot] < core::kEmptySlot || too_high) {
        problems.add(
            fmt::format("{} placement, layer {}, physical slot {}: logical expert id {} "
                        "is out of range [-1, {})",
                        which, layer_idx, slot, map[slot], p.num_logical_experts));
      }
    }
  }
}

void check_inputs(const Placement& old_p, const Placement& new_p) {
  core::ProblemList problems;
  check_shape(old_p, "old", problems);
  check_shape(new_p, "new", problems);
  if (old_p.num_layers() != new_p.num_layers()) {
    problems.add(fmt::format("the old placement has {} layers and the new one {}; they must match",
                             old_p.num_layers(), new_p.num_layers()));
  }
  problems.throw_if_any();
}

int32_t num_experts_of(const Placement& old_p, const Placement& new_p) {
  int32_t max_id = -1;
  for (const Placement* p : {&old_p, &new_p}) {
    for (const auto& map : p->physical_to_logical_map) {
      for (int32_t expert_id : map) max_id = std::max(max_id, expert_id);
    }
  }
  return max_id + 1;
}

// One (sender, receiver, expert) transfer before grouping into messages.
struct Entry {
  int32_t src_rank, dst_rank, expert_id, src_row, dst_row;
};

// Plans one layer at a time, reusing its flat scratch arrays across layers so the hot
// loops allocate nothing per expert or per row.
class LayerPlanner {
 public:
  LayerPlanner(const Placement& old_p, const Placement& new_p, const Topology& topology,
               SenderPolicy policy)
      : old_(old_p),
        new_(new_p),
        policy_(policy),
        num_experts_(num_experts_of(old_p, new_p)),
        num_ranks_(std::max(old_p.ep_size, new_p.ep_size)),
        old_row_of_(idx(old_p.ep_size) * idx(num_experts_), -1),
        recv_row_of_(idx(num_experts_), -1),
        reported_(idx(num_experts_), 0),
        cumulative_sent_(idx(num_ranks_), 0),
        balanced_(num_ranks_, topology) {}

  LayerPlan plan_layer(int32_t layer_idx, core::ProblemList& problems);

 private:
  void index_old(std::span<const int32_t> old_map);
  void clear_old(std::span<const int32_t> old_map);
  void plan_rows(int32_t layer_idx, LayerPlan& out, core::ProblemList& problems);
  void plan_rank_rows(int32_t layer_idx, int32_t rank, std::vector<RowPlan>& rows,
                      core::ProblemList& problems);
  void build_messages(LayerPlan& out);
  int32_t old_row(int32_t rank, int32_t expert_id) const {
    return rank < old_.ep_size ? old_row_of_[idx(rank) * idx(num_experts_) + idx(expert_id)] : -1;
  }

  const Placement& old_;
  const Placement& new_;
  SenderPolicy policy_;
  int32_t num_experts_;
  int32_t num_ranks_;
  std::vector<int32_t> old_row_of_;   // [old rank * num_experts + expert] -> lowest old row
  std::vector<int32_t> recv_row_of_;  // [expert] -> current rank's kReceived row
  std::vector<uint8_t> reported_;     // [expert] -> already reported missing in this layer
  detail::Holders holders_;
  std::vector<detail::Job> jobs_;
  std::vector<int32_t> senders_;
  std::vector<Entry> entries_;
  std::vector<int64_t> cumulative_sent_;  // [EP rank] experts sent in earlier layers
  detail::BalancedAssigner balanced_;
};

// Fills old_row_of_ (lowest old row per rank and expert) and the holder lists.
void LayerPlanner::index_old(std::span<const int32_t> old_map) {
  const int32_t num_rows = old_.num_slots_per_rank;
  holders_.offsets.assign(static_cast<size_t>(num_experts_) + 1, 0);
  for (int32_t rank = 0; rank < old_.ep_size; ++rank) {
    for (int32_t row = 0; row < num_rows; ++row) {
      const int32_t expert_id = old_map[idx(rank * num_rows + row)];
      if (expert_id < 0) continue;
      int32_t& lowest = old_row_of_[idx(rank) * idx(num_experts_) + idx(expert_id)];
      if (lowest >= 0) continue;  // a second copy on the same rank: the lowest row serves
      lowest = row;
      ++holders_.offsets[idx(expert_id) + 1];
    }
  }
  for (size_t e = 0; e < idx(num_experts_); ++e) holders_.offsets[e + 1] += holders_.offsets[e];
  holders_.ranks.resize(idx(holders_.offsets.back()));
  std::vector<int32_t>& cursor = senders_;  // free until the senders are assigned
  cursor.assign(holders_.offsets.begin(), holders_.offsets.end() - 1);
  for (int32_t rank = 0; rank < old_.ep_size; ++rank) {  // ascending: holder lists sorted
    for (int32_t row = 0; row < num_rows; ++row) {
      const int32_t expert_id = old_map[idx(rank * num_rows + row)];
      if (expert_id >= 0 && old_row(rank, expert_id) == row) {
        holders_.ranks[idx(cursor[idx(expert_id)]++)] = rank;
      }
    }
  }
}

void LayerPlanner::clear_old(std::span<const int32_t> old_map) {
  const int32_t num_rows = old_.num_slots_per_rank;
  for (size_t slot = 0; slot < old_map.size(); ++slot) {
    if (old_map[slot] < 0) continue;
    const size_t rank = slot / idx(num_rows);
    old_row_of_[rank * idx(num_experts_) + idx(old_map[slot])] = -1;
  }
}

void LayerPlanner::plan_rank_rows(int32_t layer_idx, int32_t rank, std::vector<RowPlan>& rows,
                                  core::ProblemList& problems) {
  const int32_t num_rows = new_.num_slots_per_rank;
  const auto& new_map = new_.physical_to_logical_map[idx(layer_idx)];
  const auto& old_map = old_.physical_to_logical_map[idx(layer_idx)];
  rows.resize(idx(num_rows));
  for (int32_t row = 0; row < num_rows; ++row) {
    const int32_t expert_id = new_map[idx(rank * num_rows + row)];
    RowPlan& out = rows[idx(row)];
    out.expert_id = expert_id;
    if (expert_id < 0) {
      out.source = RowSource::kEmpty;
    } else if (rank < old_.ep_size && row < old_.num_slots_per_rank &&
               old_map[idx(rank * old_.num_slots_per_rank + row)] == expert_id) {
      out.source = RowSource::kUnchanged;
      out.src_row = row;
    } else if (old_row(rank, expert_id) >= 0) {
      out.source = RowSource::kLocal;
      out.src_row = old_row(rank, expert_id);
    } else if (recv_row_of_[idx(expert_id)] >= 0) {
      out.source = RowSource::kCopy;
      out.src_row = recv_row_of_[idx(expert_id)];
    } else {
      out.source = RowSource::kReceived;
      recv_row_of_[idx(expert_id)] = row;
      if (!holders_.of(expert_id).empty()) {
        jobs_.push_back({expert_id, rank, row});
      } else if (!reported_[idx(expert_id)]) {
        reported_[idx(expert_id)] = 1;
        problems.add(fmt::format(
            "layer {}, logical expert id {}: needed by the new placement (EP rank {}, row {}) "
            "but held by no slot of the old placement",
            layer_idx, expert_id, rank, row));
      }
    }
  }
  for (const RowPlan& r : rows) {
    if (r.expert_id >= 0) recv_row_of_[idx(r.expert_id)] = -1;
  }
}

void LayerPlanner::plan_rows(int32_t layer_idx, LayerPlan& out, core::ProblemList& problems) {
  jobs_.clear();
  std::fill(reported_.begin(), reported_.end(), 0);
  out.rows.resize(idx(new_.ep_size));
  for (int32_t rank = 0; rank < new_.ep_size; ++rank) {
    plan_rank_rows(layer_idx, rank, out.rows[idx(rank)], problems);
  }
  // Senders are chosen per expert over ascending receivers (vLLM's R list).
  std::sort(jobs_.begin(), jobs_.end(), [](const detail::Job& a, const detail::Job& b) {
    return std::tie(a.expert_id, a.dst_rank) < std::tie(b.expert_id, b.dst_rank);
  });
}

// NOTE: messages sorted by (src, dst) and entries by expert id: every rank derives the
// same byte layout of every message from this order.
void LayerPlanner::build_messages(LayerPlan& out) {
  entries_.clear();
  for (size_t i = 0; i < jobs_.size(); ++i) {
    const detail::Job& job = jobs_[i];
    const int32_t src = senders_[i];
    out.rows[idx(job.dst_rank)][idx(job.dst_row)].peer = src;
    entries_.push_back(
        {src, job.dst_rank, job.expert_id, old_row(src, job.expert_id), job.dst_row});
    ++cumulative_sent_[idx(src)];
  }
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.src_rank, a.dst_rank, a.expert_id) <
           std::tie(b.src_rank, b.dst_rank, b.expert_id);
  });
  out.messages.clear();
  for (const Entry& entry : entries_) {
    if (out.messages.empty() || out.messages.back().src_rank != entry.src_rank ||
        out.messages.back().dst_rank != entry.dst_rank) {
      out.messages.push_back(Message{entry.src_rank, entry.dst_rank, {}, {}, {}});
    }
    Message& message = out.messages.back();
    message.expert_ids.push_back(entry.expert_id);
    message.src_rows.push_back(entry.src_row);
    message.dst_rows.push_back(entry.dst_row);
  }
}

LayerPlan LayerPlanner::plan_layer(int32_t layer_idx, core::ProblemList& problems) {
  const std::span<const int32_t> old_map(old_.physical_to_logical_map[idx(layer_idx)]);
  LayerPlan out;
  index_old(old_map);
  plan_rows(layer_idx, out, problems);
  if (problems.empty()) {
    if (policy_ == SenderPolicy::kVllm) {
      detail::assign_vllm(jobs_, holders_, senders_);
    } else {
      balanced_.assign(jobs_, holders_, cumulative_sent_, senders_);
    }
    build_messages(out);
  }
  clear_old(old_map);
  return out;
}

}  // namespace

Plan make_plan(const placement::Placement& old_placement, const placement::Placement& new_placement,
               const Topology& topology, SenderPolicy policy) {
  check_inputs(old_placement, new_placement);
  detail::check_topology(topology, std::max(old_placement.ep_size, new_placement.ep_size));
  Plan plan;
  plan.old_ep_size = old_placement.ep_size;
  plan.new_ep_size = new_placement.ep_size;
  plan.old_num_slots_per_rank = old_placement.num_slots_per_rank;
  plan.new_num_slots_per_rank = new_placement.num_slots_per_rank;
  plan.layers.reserve(idx(old_placement.num_layers()));
  LayerPlanner planner(old_placement, new_placement, topology, policy);
  // Every layer is checked, so that one error lists every missing expert of every layer.
  core::ProblemList problems;
  for (int32_t layer_idx = 0; layer_idx < old_placement.num_layers(); ++layer_idx) {
    plan.layers.push_back(planner.plan_layer(layer_idx, problems));
  }
  problems.throw_if_any();
  return plan;
}

std::vector<const Message*> messages_from(const LayerPlan& layer, int32_t ep_rank) {
  std::vector<const Message*> out;
  for (const Message& m : layer.messages) {
    if (m.src_rank == ep_rank) out.push_back(&m);
  }
  return out;
}

std::vector<const Message*> messages_to(const LayerPlan& layer, int32_t ep_rank) {
  std::vector<const Message*> out;
  for (const Message& m : layer.messages) {
    if (m.dst_rank == ep_rank) out.push_back(&m);
  }
  return out;
}

}  // namespace eplb::plan
