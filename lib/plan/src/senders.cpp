#include "senders.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

#include "eplb/core/error.hpp"

namespace eplb::plan::detail {
namespace {

constexpr int32_t kNoCap = std::numeric_limits<int32_t>::max();
constexpr int32_t kUnvisited = -2;
constexpr int32_t kSource = -1;

}  // namespace

void assign_vllm(std::span<const Job> jobs, const Holders& holders, std::vector<int32_t>& senders) {
  senders.assign(jobs.size(), -1);
  size_t begin = 0;
  while (begin < jobs.size()) {
    const int32_t expert_id = jobs[begin].expert_id;
    size_t end = begin;
    while (end < jobs.size() && jobs[end].expert_id == expert_id) ++end;
    // R = the receivers [begin, end) (ascending: jobs are sorted), S = the holders.
    const auto holder_ranks = holders.of(expert_id);
    const size_t num_receivers = end - begin;
    const size_t num_holders = holder_ranks.size();
    EPLB_ASSERT(num_holders > 0);
    const size_t per_holder = num_receivers / num_holders;
    for (size_t i = 0; i < num_holders; ++i) {
      for (size_t t = 0; t < per_holder; ++t) senders[begin + i * per_holder + t] = holder_ranks[i];
      const size_t extra = num_holders * per_holder + i;
      if (extra < num_receivers) senders[begin + extra] = holder_ranks[i];
    }
    begin = end;
  }
}

BalancedAssigner::BalancedAssigner(int32_t num_ep_ranks, const Topology& topology)
    : num_ep_ranks_(num_ep_ranks), topology_(topology) {}

void BalancedAssigner::assign(std::span<const Job> jobs, const Holders& holders,
                              const std::vector<int64_t>& cumulative_sent,
                              std::vector<int32_t>& senders) {
  senders.assign(jobs.size(), -1);
  if (jobs.empty()) return;
  // Most constrained first: an expert with one holder leaves no choice, so place those
  // before the flexible ones fill that holder up. Stable, so ties keep (expert, dst) order.
  order_.resize(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) order_[i] = static_cast<int32_t>(i);
  std::stable_sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
    return holders.of(jobs[idx(a)].expert_id).size() < holders.of(jobs[idx(b)].expert_id).size();
  });

  greedy(jobs, holders, cumulative_sent, kNoCap, senders);
  reduce_max(jobs, holders, senders);
  if (!topology_.known()) return;

  // The optimum max load is now known; a second pass fills same-node senders up to that
  // cap first, which often saves inter-node traffic the load-first greedy gave away.
  const int32_t cap = *std::max_element(load_.begin(), load_.end());
  greedy(jobs, holders, cumulative_sent, cap, capped_senders_);
  enforce_cap(jobs, holders, cap, capped_senders_);
  if (inter_node_jobs(jobs, capped_senders_) < inter_node_jobs(jobs, senders)) {
    senders.swap(capped_senders_);
  }
}

int32_t BalancedAssigner::greedy(std::span<const Job> jobs, const Holders& holders,
                                 const std::vector<int64_t>& cumulative_sent, int32_t cap,
                                 std::vector<int32_t>& senders) {
  senders.assign(jobs.size(), -1);
  load_.assign(static_cast<size_t>(num_ep_ranks_), 0);
  // Uncapped: least loaded first. Capped: any holder below the cap, same node first.
  auto key = [&](int32_t rank, int32_t dst_rank) {
    const bool full = cap != kNoCap && load_[idx(rank)] >= cap;
    const int32_t primary = cap == kNoCap ? load_[idx(rank)] : static_cast<int32_t>(full);
    const int32_t secondary = cap == kNoCap ? 0 : load_[idx(rank)];
    return std::make_tuple(primary, !same_node(rank, dst_rank), secondary,
                           cumulative_sent[idx(rank)], rank);
  };
  int32_t max_load = 0;
  for (int32_t job_idx : order_) {
    const Job& job = jobs[idx(job_idx)];
    int32_t best = -1;
    for (int32_t rank : holders.of(job.expert_id)) {
      if (best < 0 || key(rank, job.dst_rank) < key(best, job.dst_rank)) best = rank;
    }
    EPLB_ASSERT(best >= 0);
    senders[idx(job_idx)] = best;
    max_load = std::max(max_load, ++load_[idx(best)]);
  }
  return max_load;
}

// Moves units off the busiest senders until no alternating path leads from a sender at
// the max load M to one at M-2 or less. NOTE: that is the optimum: the senders reachable
// from the busiest ones all carry M-1 or M, and their jobs can only go among themselves.
void BalancedAssigner::reduce_max(std::span<const Job> jobs, const Holders& holders,
                                  std::vector<int32_t>& senders) {
  for (;;) {
    const int32_t max_load = *std::max_element(load_.begin(), load_.end());
    const bool moved = shift_one(
        jobs, holders, senders, [&](int32_t r) { return load_[idx(r)] == max_load; },
        [&](int32_t r) { return load_[idx(r)] <= max_load - 2; });
    if (!moved) return;  // each move lowers the sum of squared loads: this ends
  }
}

// Brings every sender down to `cap`, which reduce_max proved feasible.
void BalancedAssigner::enforce_cap(std::span<const Job> jobs, const Holders& holders, int32_t cap,
                                   std::vector<int32_t>& senders) {
  for (;;) {
    const bool over = std::any_of(load_.begin(), load_.end(), [&](int32_t l) { return l > cap; });
    if (!over) return;
    const bool moved = shift_one(
        jobs, holders, senders, [&](int32_t r) { return load_[idx(r)] > cap; },
        [&](int32_t r) { return load_[idx(r)] < cap; });
    EPLB_ASSERT(moved);
  }
}

// Breadth-first search from the source senders along "job assigned to u, job could go
// to v" edges; on reaching a target, shifts every job on the path one step. Ranks and
// jobs are visited in ascending order, so the path found is deterministic.
template <typename IsSource, typename IsTarget>
bool BalancedAssigner::shift_one(std::span<const Job> jobs, const Holders& holders,
                                 std::vector<int32_t>& senders, IsSource is_source,
                                 IsTarget is_target) {
  const auto num_ranks = static_cast<size_t>(num_ep_ranks_);
  job_offsets_.assign(num_ranks + 1, 0);
  for (int32_t s : senders) ++job_offsets_[idx(s) + 1];
  for (size_t r = 0; r < num_ranks; ++r) job_offsets_[r + 1] += job_offsets_[r];
  jobs_by_sender_.resize(senders.size());
  // parent_rank_ serves as the fill cursor here; the search below overwrites it.
  parent_rank_.assign(job_offsets_.begin(), job_offsets_.end() - 1);
  for (size_t j = 0; j < senders.size(); ++j) {
    jobs_by_sender_[idx(parent_rank_[idx(senders[j])]++)] = static_cast<int32_t>(j);
  }

  parent_job_.assign(num_ranks, kUnvisited);
  queue_.clear();
  for (int32_t r = 0; r < num_ep_ranks_; ++r) {
    if (is_source(r)) {
      parent_job_[idx(r)] = kSource;
      queue_.push_back(r);
    }
  }
  for (size_t head = 0; head < queue_.size(); ++head) {
    const int32_t from = queue_[head];
    for (int32_t k = job_offsets_[idx(from)]; k < job_offsets_[idx(from) + 1]; ++k) {
      const int32_t job_idx = jobs_by_sender_[idx(k)];
      for (int32_t to : holders.of(jobs[idx(job_idx)].expert_id)) {
        if (parent_job_[idx(to)] != kUnvisited) continue;
        parent_job_[idx(to)] = job_idx;
        parent_rank_[idx(to)] = from;
        if (!is_target(to)) {
          queue_.push_back(to);
          continue;
        }
        ++load_[idx(to)];
        int32_t at = to;
        while (parent_job_[idx(at)] != kSource) {
          senders[idx(parent_job_[idx(at)])] = at;
          at = parent_rank_[idx(at)];
        }
        --load_[idx(at)];
        return true;
      }
    }
  }
  return false;
}

int64_t BalancedAssigner::inter_node_jobs(std::span<const Job> jobs,
                                          const std::vector<int32_t>& senders) const {
  int64_t count = 0;
  for (size_t i = 0; i < jobs.size(); ++i) count += !same_node(senders[i], jobs[i].dst_rank);
  return count;
}

}  // namespace eplb::plan::detail
