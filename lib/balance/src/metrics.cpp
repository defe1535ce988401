// How balanced a placement is for given loads, and how many experts it moves.
#include <algorithm>
#include <vector>

#include "eplb/balance/balance.hpp"
#include "eplb/core/error.hpp"

namespace eplb::balance {

std::vector<double> gpu_loads(const placement::Placement& p, int32_t layer_idx,
                              const std::vector<double>& layer_loads) {
  const auto& map = p.physical_to_logical_map[static_cast<size_t>(layer_idx)];
  std::vector<int32_t> count(layer_loads.size(), 0);
  for (int32_t e : map) {
    if (e >= 0) ++count[static_cast<size_t>(e)];
  }
  std::vector<double> out(static_cast<size_t>(p.ep_size), 0.0);
  std::vector<double> terms;
  const auto per_rank = static_cast<size_t>(p.num_slots_per_rank);
  for (size_t gpu = 0; gpu < out.size(); ++gpu) {
    terms.clear();
    for (size_t row = 0; row < per_rank; ++row) {
      const int32_t e = map[gpu * per_rank + row];
      if (e >= 0) {
        const auto i = static_cast<size_t>(e);
        terms.push_back(layer_loads[i] / count[i]);
      }
    }
    // NOTE: ascending order, so that two GPUs holding the same multiset of experts (in any
    // rows) get bit-identical loads: "no busier than the reference" is compared exactly.
    std::sort(terms.begin(), terms.end());
    double sum = 0;
    for (double t : terms) sum += t;
    out[gpu] = sum;
  }
  return out;
}

double balancedness(const placement::Placement& p, int32_t layer_idx,
                    const std::vector<double>& layer_loads) {
  const auto loads = gpu_loads(p, layer_idx, layer_loads);
  double total = 0, max = 0;
  for (double l : loads) {
    total += l;
    max = std::max(max, l);
  }
  return max > 0 ? total / static_cast<double>(loads.size()) / max : 1.0;
}

int64_t experts_moved(const placement::Placement& from, const placement::Placement& to) {
  EPLB_ASSERT(from.ep_size == to.ep_size && from.num_slots_per_rank == to.num_slots_per_rank &&
              from.num_layers() == to.num_layers());
  const auto per_rank = static_cast<size_t>(to.num_slots_per_rank);
  int64_t moved = 0;
  for (size_t layer = 0; layer < to.physical_to_logical_map.size(); ++layer) {
    const auto& a = from.physical_to_logical_map[layer];
    const auto& b = to.physical_to_logical_map[layer];
    for (size_t rank = 0; rank < static_cast<size_t>(to.ep_size); ++rank) {
      const auto first = static_cast<std::ptrdiff_t>(rank * per_rank);
      const auto last = first + static_cast<std::ptrdiff_t>(per_rank);
      std::vector<int32_t> had(a.begin() + first, a.begin() + last);
      std::vector<int32_t> has(b.begin() + first, b.begin() + last);
      std::sort(had.begin(), had.end());
      std::sort(has.begin(), has.end());
      has.erase(std::unique(has.begin(), has.end()), has.end());
      for (int32_t e : has) {
        if (e >= 0 && !std::binary_search(had.begin(), had.end(), e)) ++moved;
      }
    }
  }
  return moved;
}

}  // namespace eplb::balance
