// The per-layer local search of the traffic-aware balance (rebalance_from, traffic.cpp):
// one layer's state (which expert each slot holds, replica counts, GPU loads) and the
// greedy moves over it. Internal to lib/balance.
//
// Moves: swap two slots between GPUs, or re-point a slot of an expert with several replicas
// to another expert. The search measures the excess, the sum over GPUs of load above the
// target (the reference's maximum), and applies the move that removes the most excess per
// expert moved, moves that cost nothing first; a chain of two swaps when no single move
// helps. A move's cost is counted as `plan` counts experts moved: an expert arriving on a
// GPU that held it in neither OLD nor now costs one; leaving costs nothing. Every accepted
// move lowers the excess, so the search ends; it succeeds when the excess is zero.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "eplb/balance/balance.hpp"
#include "eplb/core/error.hpp"

namespace eplb::balance::detail {

// What stays fixed while one layer is searched.
struct LayerShape {
  int32_t num_gpus = 0;
  int32_t slots_per_gpu = 0;
  int32_t num_experts = 0;
  int32_t gpus_per_node = 0;  // == num_gpus without hierarchical balancing
  int32_t group_size = 0;     // 0: groups are not kept on nodes
  int32_t node_of(int32_t gpu) const { return gpu / gpus_per_node; }
};

class LayerSearch {
 public:
  // Starts from `start` (OLD, or OLD with some slots emptied as -1); moves are counted
  // against `old_map`. `group_node` pins each group to a node (empty: pinned where `start`
  // holds a group on one node only).
  LayerSearch(const LayerShape& shape, const std::vector<int32_t>& old_map,
              const std::vector<int32_t>& start, const std::vector<double>& loads, double target,
              std::vector<int32_t> group_node = {})
      : s_(shape),
        old_(old_map),
        w_(loads),
        target_(target),
        slot_(start),
        pinned_node_(std::move(group_node)) {
    const auto cells = static_cast<size_t>(s_.num_gpus) * static_cast<size_t>(s_.num_experts);
    old_has_.assign(cells, 0);
    has_.assign(cells, 0);
    count_.assign(static_cast<size_t>(s_.num_experts), 0);
    holders_.assign(static_cast<size_t>(s_.num_experts), {});
    for (size_t slot = 0; slot < old_.size(); ++slot) {
      if (old_[slot] >= 0) old_has_[cell(gpu_of(slot), old_[slot])] = 1;
    }
    for (size_t slot = 0; slot < slot_.size(); ++slot) {
      const int32_t e = slot_[slot];
      slot_[slot] = -1;
      if (e >= 0) add(slot, e);
    }
    if (pinned_node_.empty()) pin_groups();
    fill_empty_slots();
    load_.resize(static_cast<size_t>(s_.num_gpus));
    for (int32_t g = 0; g < s_.num_gpus; ++g) refresh(g);
  }

  bool balanced() const { return *std::max_element(load_.begin(), load_.end()) <= target_; }

  // Applies the best move until balanced or no move lowers the excess. Returns balanced().
  bool run(TrafficStats& stats) {
    const size_t max_moves = 4 * slot_.size();
    for (size_t moves = 0; moves < max_moves && !balanced(); ++moves) {
      Move best;
      best_swap(best);
      best_repoint(best);
      if (!best.valid()) best_chain(best);
      if (!best.valid()) break;
      if (best.chained) {
        apply_swap(best.slot_a, best.slot_b);
        apply_swap(best.slot_c, best.slot_d);
        stats.swaps += 2;
      } else if (best.to_expert >= 0) {
        apply_repoint(best.slot_a, best.to_expert);
        ++stats.repoints;
      } else {
        apply_swap(best.slot_a, best.slot_b);
        ++stats.swaps;
      }
    }
    return balanced();
  }

  // The searched layer, each expert that OLD held on a GPU kept in one of its old rows.
  std::vector<int32_t> result() const { return keep_old_rows(old_, slot_, s_.slots_per_gpu); }

  // For every GPU, the experts it holds (multiset, ascending) with rows chosen so that as
  // many as possible sit where `old_map` had them; the rest fill the free rows ascending.
  static std::vector<int32_t> keep_old_rows(const std::vector<int32_t>& old_map,
                                            const std::vector<int32_t>& new_map,
                                            int32_t slots_per_gpu) {
    const auto per = static_cast<size_t>(slots_per_gpu);
    std::vector<int32_t> out(new_map.size(), -1);
    for (size_t first = 0; first < new_map.size(); first += per) {
      std::vector<int32_t> pending(new_map.begin() + static_cast<std::ptrdiff_t>(first),
                                   new_map.begin() + static_cast<std::ptrdiff_t>(first + per));
      std::sort(pending.begin(), pending.end());
      std::vector<char> used(per, 0);
      for (size_t row = 0; row < per; ++row) {
        const auto it = std::lower_bound(pending.begin(), pending.end(), old_map[first + row]);
        if (old_map[first + row] >= 0 && it != pending.end() && *it == old_map[first + row]) {
          out[first + row] = *it;
          used[row] = 1;
          pending.erase(it);
        }
      }
      size_t next = 0;
      for (size_t row = 0; row < per; ++row) {
        if (!used[row]) out[first + row] = pending[next++];
      }
    }
    return out;
  }

 private:
  struct Move {
    double score = 0;  // excess removed (per expert moved when the move costs any)
    int cost = 1;      // experts moved; <= 0 ranks above every costly move
    size_t slot_a = 0, slot_b = 0;
    int32_t to_expert = -1;         // >= 0: re-point slot_a to it; else swap slot_a and slot_b
    size_t slot_c = 0, slot_d = 0;  // chained: then swap slot_c and slot_d
    bool chained = false;
    bool set = false;
    bool valid() const { return set; }
    // Free moves first (most excess removed), then the most excess removed per expert.
    bool worse_than(int c, double s) const {
      if (!set) return true;
      const bool free_new = c <= 0, free_old = cost <= 0;
      if (free_new != free_old) return free_new;
      return s > score;
    }
  };

  size_t cell(int32_t gpu, int32_t e) const {
    return static_cast<size_t>(gpu) * static_cast<size_t>(s_.num_experts) + static_cast<size_t>(e);
  }
  int32_t gpu_of(size_t slot) const {
    return static_cast<int32_t>(slot / static_cast<size_t>(s_.slots_per_gpu));
  }
  double per_replica(int32_t e) const {
    return w_[static_cast<size_t>(e)] / count_[static_cast<size_t>(e)];
  }
  double excess(double load) const { return load > target_ ? load - target_ : 0.0; }
  bool allowed(int32_t e, int32_t gpu) const {
    if (s_.group_size == 0) return true;
    const int32_t pin = pinned_node_[static_cast<size_t>(e / s_.group_size)];
    return pin < 0 || pin == s_.node_of(gpu);
  }
  // +1 when expert e arriving on gpu is a move (it held e in neither OLD nor now).
  int arrival_cost(int32_t gpu, int32_t e) const {
    return has_[cell(gpu, e)] == 0 && !old_has_[cell(gpu, e)] ? 1 : 0;
  }
  // -1 when e leaving gpu undoes an earlier move (its last copy there, not in OLD).
  int departure_cost(int32_t gpu, int32_t e) const {
    return has_[cell(gpu, e)] == 1 && !old_has_[cell(gpu, e)] ? -1 : 0;
  }

  void add(size_t slot, int32_t e) {
    slot_[slot] = e;
    ++has_[cell(gpu_of(slot), e)];
    ++count_[static_cast<size_t>(e)];
    holders_[static_cast<size_t>(e)].push_back(slot);
  }
  void remove(size_t slot) {
    const int32_t e = slot_[slot];
    if (e < 0) return;
    --has_[cell(gpu_of(slot), e)];
    --count_[static_cast<size_t>(e)];
    auto& h = holders_[static_cast<size_t>(e)];
    h.erase(std::find(h.begin(), h.end(), slot));
    slot_[slot] = -1;
  }

  // Canonical load (ascending terms), bit-identical to gpu_loads() for the same slots.
  void refresh(int32_t gpu) {
    const auto per = static_cast<size_t>(s_.slots_per_gpu);
    terms_.clear();
    for (size_t row = 0; row < per; ++row) {
      const int32_t e = slot_[static_cast<size_t>(gpu) * per + row];
      if (e >= 0) terms_.push_back(per_replica(e));
    }
    std::sort(terms_.begin(), terms_.end());
    double sum = 0;
    for (double t : terms_) sum += t;
    load_[static_cast<size_t>(gpu)] = sum;
  }

  // A group whose replicas OLD held on one node only stays on that node.
  void pin_groups() {
    if (s_.group_size == 0) return;
    const auto num_groups = static_cast<size_t>(s_.num_experts / s_.group_size);
    pinned_node_.assign(num_groups, -1);
    std::vector<char> split(num_groups, 0);
    for (size_t slot = 0; slot < slot_.size(); ++slot) {
      if (slot_[slot] < 0) continue;
      const auto group = static_cast<size_t>(slot_[slot] / s_.group_size);
      const int32_t node = s_.node_of(gpu_of(slot));
      if (pinned_node_[group] < 0 && !split[group]) {
        pinned_node_[group] = node;
      } else if (pinned_node_[group] != node) {
        pinned_node_[group] = -1;
        split[group] = 1;
      }
    }
  }

  // Empty slots first take every expert without a replica (heaviest first), then replicas
  // the way the reference adds them (the allowed expert with the highest load per replica,
  // lowest id among equals); each goes to the empty slot, among those it may use, of the
  // GPU with the least load so far (the lowest slot on ties), as a packing would.
  void fill_empty_slots() {
    std::vector<double> approx(static_cast<size_t>(s_.num_gpus), 0.0);
    size_t num_free = 0;
    for (size_t slot = 0; slot < slot_.size(); ++slot) {
      if (slot_[slot] >= 0) {
        approx[static_cast<size_t>(gpu_of(slot))] += per_replica(slot_[slot]);
      } else {
        ++num_free;
      }
    }
    const auto place = [&](int32_t e) {
      size_t best = slot_.size();
      for (size_t slot = 0; slot < slot_.size(); ++slot) {
        if (slot_[slot] >= 0 || !allowed(e, gpu_of(slot))) continue;
        if (best == slot_.size() ||
            approx[static_cast<size_t>(gpu_of(slot))] < approx[static_cast<size_t>(gpu_of(best))]) {
          best = slot;
        }
      }
      EPLB_ASSERT(best < slot_.size());
      add(best, e);
      approx[static_cast<size_t>(gpu_of(best))] += per_replica(e);
      --num_free;
    };
    std::vector<int32_t> missing;
    for (int32_t e = 0; e < s_.num_experts; ++e) {
      if (count_[static_cast<size_t>(e)] == 0) missing.push_back(e);
    }
    std::stable_sort(missing.begin(), missing.end(), [&](int32_t a, int32_t b) {
      return w_[static_cast<size_t>(a)] > w_[static_cast<size_t>(b)];
    });
    for (int32_t e : missing) place(e);
    while (num_free > 0) {
      // An expert that may use some free slot, with the highest load per added replica.
      int32_t best = -1;
      for (int32_t e = 0; e < s_.num_experts; ++e) {
        bool usable = false;
        for (size_t slot = 0; slot < slot_.size() && !usable; ++slot) {
          usable = slot_[slot] < 0 && allowed(e, gpu_of(slot));
        }
        if (!usable) continue;
        const double value = w_[static_cast<size_t>(e)] / (count_[static_cast<size_t>(e)] + 1);
        if (best < 0 ||
            value > w_[static_cast<size_t>(best)] / (count_[static_cast<size_t>(best)] + 1)) {
          best = e;
        }
      }
      EPLB_ASSERT(best >= 0);
      place(best);
    }
  }

  // Swaps of a slot on a GPU above the target (only `only_gpu` when >= 0) with any slot of
  // another GPU. `base_gain` and `base_cost` are added (a chain's first swap).
  void best_swap(Move& best, int32_t only_gpu = -1, double base_gain = 0, int base_cost = 0) const {
    const size_t per = static_cast<size_t>(s_.slots_per_gpu);
    for (int32_t g1 = 0; g1 < s_.num_gpus; ++g1) {
      const double l1 = load_[static_cast<size_t>(g1)];
      if (l1 <= target_ || (only_gpu >= 0 && g1 != only_gpu)) continue;
      for (size_t a = static_cast<size_t>(g1) * per; a < (static_cast<size_t>(g1) + 1) * per; ++a) {
        const int32_t e1 = slot_[a];
        const double x1 = per_replica(e1);
        const int leave1 = departure_cost(g1, e1);
        for (size_t b = 0; b < slot_.size(); ++b) {
          const int32_t g2 = gpu_of(b);
          const int32_t e2 = slot_[b];
          if (g2 == g1 || e2 == e1) continue;
          const double x2 = per_replica(e2);
          if (x2 >= x1 || !allowed(e1, g2) || !allowed(e2, g1)) continue;
          const double l2 = load_[static_cast<size_t>(g2)];
          const double gain =
              base_gain + excess(l1) + excess(l2) - excess(l1 - x1 + x2) - excess(l2 - x2 + x1);
          if (gain <= min_gain()) continue;
          const int cost = base_cost + leave1 + departure_cost(g2, e2) + arrival_cost(g2, e1) +
                           arrival_cost(g1, e2);
          consider(best, cost, gain, a, b, -1);
        }
      }
    }
  }

  // When no single move lowers the excess: a swap that pushes its partner GPU above the
  // target, followed by the best swap out of that partner (an ejection chain of two).
  void best_chain(Move& best) {
    const size_t per = static_cast<size_t>(s_.slots_per_gpu);
    for (int32_t g1 = 0; g1 < s_.num_gpus; ++g1) {
      if (load_[static_cast<size_t>(g1)] <= target_) continue;
      for (size_t a = static_cast<size_t>(g1) * per; a < (static_cast<size_t>(g1) + 1) * per; ++a) {
        for (size_t b = 0; b < slot_.size(); ++b) {
          const int32_t g2 = gpu_of(b), e1 = slot_[a], e2 = slot_[b];
          if (g2 == g1 || e2 == e1 || per_replica(e2) >= per_replica(e1) || !allowed(e1, g2) ||
              !allowed(e2, g1)) {
            continue;
          }
          const double before =
              excess(load_[static_cast<size_t>(g1)]) + excess(load_[static_cast<size_t>(g2)]);
          const int cost = departure_cost(g1, e1) + departure_cost(g2, e2) + arrival_cost(g2, e1) +
                           arrival_cost(g1, e2);
          apply_swap(a, b);
          const double gain = before - excess(load_[static_cast<size_t>(g1)]) -
                              excess(load_[static_cast<size_t>(g2)]);
          Move second;
          if (load_[static_cast<size_t>(g2)] > target_) best_swap(second, g2, gain, cost);
          apply_swap(a, b);  // back
          if (second.valid() && best.worse_than(second.cost, second.score)) {
            best = second;
            best.slot_c = second.slot_a;
            best.slot_d = second.slot_b;
            best.slot_a = a;
            best.slot_b = b;
            best.chained = true;
          }
        }
      }
    }
  }

  void best_repoint(Move& best) const {
    std::vector<std::pair<int32_t, double>> delta;  // gpu -> load change
    for (size_t a = 0; a < slot_.size(); ++a) {
      const int32_t e1 = slot_[a];
      const auto c1 = count_[static_cast<size_t>(e1)];
      if (c1 < 2) continue;  // every logical expert keeps a replica
      const int32_t g = gpu_of(a);
      const double x1 = per_replica(e1);
      const double x1_after = w_[static_cast<size_t>(e1)] / (c1 - 1);
      for (int32_t e2 = 0; e2 < s_.num_experts; ++e2) {
        if (e2 == e1 || !allowed(e2, g)) continue;
        const auto c2 = count_[static_cast<size_t>(e2)];
        const double x2 = per_replica(e2);
        const double x2_after = w_[static_cast<size_t>(e2)] / (c2 + 1);
        delta.clear();
        const auto bump = [&](int32_t gpu, double d) {
          for (auto& [gg, dd] : delta) {
            if (gg == gpu) {
              dd += d;
              return;
            }
          }
          delta.emplace_back(gpu, d);
        };
        bool helps = load_[static_cast<size_t>(g)] > target_;
        for (size_t h : holders_[static_cast<size_t>(e2)]) {
          helps = helps || load_[static_cast<size_t>(gpu_of(h))] > target_;
        }
        if (!helps) continue;
        bump(g, x2_after - x1);
        for (size_t h : holders_[static_cast<size_t>(e1)]) {
          if (h != a) bump(gpu_of(h), x1_after - x1);
        }
        for (size_t h : holders_[static_cast<size_t>(e2)]) bump(gpu_of(h), x2_after - x2);
        double gain = 0;
        for (const auto& [gpu, d] : delta) {
          const double l = load_[static_cast<size_t>(gpu)];
          gain += excess(l) - excess(l + d);
        }
        if (gain <= min_gain()) continue;
        const int cost = departure_cost(g, e1) + arrival_cost(g, e2);
        consider(best, cost, gain, a, a, e2);
      }
    }
  }

  void consider(Move& best, int cost, double gain, size_t a, size_t b, int32_t to) const {
    const double score = cost <= 0 ? gain : gain / cost;
    if (best.worse_than(cost, score)) {
      best = Move{};
      best.score = score;
      best.cost = cost;
      best.slot_a = a;
      best.slot_b = b;
      best.to_expert = to;
      best.set = true;
    }
  }

  double min_gain() const { return target_ * 1e-12; }

  void apply_swap(size_t a, size_t b) {
    const int32_t e1 = slot_[a], e2 = slot_[b];
    remove(a);
    remove(b);
    add(a, e2);
    add(b, e1);
    refresh(gpu_of(a));
    refresh(gpu_of(b));
  }

  void apply_repoint(size_t a, int32_t e2) {
    const int32_t e1 = slot_[a];
    remove(a);
    add(a, e2);
    std::vector<int32_t> touched{gpu_of(a)};
    for (int32_t e : {e1, e2}) {
      for (size_t h : holders_[static_cast<size_t>(e)]) touched.push_back(gpu_of(h));
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (int32_t g : touched) refresh(g);
  }

  LayerShape s_;
  const std::vector<int32_t>& old_;
  const std::vector<double>& w_;
  double target_;
  std::vector<int32_t> slot_;                 // [slot] -> logical expert now
  std::vector<int32_t> count_;                // [expert] -> replicas now
  std::vector<std::vector<size_t>> holders_;  // [expert] -> slots holding it now
  std::vector<uint8_t> old_has_;              // [gpu][expert]: OLD held it there
  std::vector<int16_t> has_;                  // [gpu][expert]: copies held there now
  std::vector<int32_t> pinned_node_;          // [group] -> node, or -1
  std::vector<double> load_;                  // [gpu], canonical
  std::vector<double> terms_;                 // scratch for refresh()
};

}  // namespace eplb::balance::detail
