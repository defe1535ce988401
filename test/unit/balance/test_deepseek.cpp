// The reference algorithm: DeepSeek's published example, the fallback, and errors.
#include <catch2/catch.hpp>

#include "eplb/balance/balance.hpp"
#include "eplb/core/error.hpp"

namespace eplb::balance {
namespace {

Loads readme_loads() {
  return {12,
          {{90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
           {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}}};
}

}  // namespace

TEST_CASE("the DeepSeek EPLB README example gives the README's output", "[balance][deepseek]") {
  // deepseek-ai/EPLB README: 12 experts, 16 replicas, 4 groups, 2 nodes, 8 GPUs.
  const auto p = rebalance_experts(readme_loads(), {16, 4, 2, 8});
  CHECK(p.ep_size == 8);
  CHECK(p.num_slots_per_rank == 2);
  CHECK(p.num_logical_experts == 12);
  CHECK(p.physical_to_logical_map ==
        std::vector<std::vector<int32_t>>{{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                          {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}});
}
}  // namespace eplb::balance
