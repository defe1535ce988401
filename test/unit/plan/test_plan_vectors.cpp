// The specification's test vectors and small hand-checked cases, with exact plans.
#include <catch2/catch.hpp>

#include "eplb/core/error.hpp"
#include "plan_test_util.hpp"

namespace eplb::plan::test {
namespace {

using Rows = std::vector<std::vector<RowPlan>>;

Message msg(int32_t src, int32_t dst, Map experts, Map src_rows, Map dst_rows) {
  return {src, dst, std::move(experts), std::move(src_rows), std::move(dst_rows)};
}

std::vector<std::string> problems_of(const Placement& a, const Placement& b) {
  try {
    make_plan(a, b);
  } catch (const core::Error& e) {
    CHECK(e.kind() == core::ErrorKind::kInput);
    return e.problems();
  }
  FAIL("make_plan accepted an invalid pair");
  return {};
}

TEST_CASE("vector 1: identity moves nothing", "[plan][vectors]") {
  const auto p = make_placement(2, 2, {{0, 1, 2, 3}, {3, -1, 1, 1}});
  const Plan plan = make_plan(p, p);
  REQUIRE(plan.layers.size() == 2);
  CHECK(plan.layers[0].messages.empty());
  CHECK(plan.layers[0].rows ==
        Rows{{unchanged(0, 0), unchanged(1, 1)}, {unchanged(2, 0), unchanged(3, 1)}});
  CHECK(plan.layers[1].messages.empty());
  CHECK(plan.layers[1].rows ==
        Rows{{unchanged(3, 0), empty()}, {unchanged(1, 0), unchanged(1, 1)}});
  const PlanStats stats = summarize(plan);
  CHECK(stats.experts_moved == 0);
  CHECK(stats.min_experts_required == 0);
  CHECK(stats.ranks[0].rows_unchanged == 3);
  CHECK(stats.ranks[0].rows_empty == 1);
  CHECK(stats.ranks[1].rows_unchanged == 4);
}

TEST_CASE("vector 2: swap between two ranks", "[plan][vectors]") {
  const auto old_p = make_placement(2, 2, {{0, 1, 2, 3}});
  const auto new_p = make_placement(2, 2, {{2, 1, 0, 3}});
  for (auto policy : {SenderPolicy::kBalanced, SenderPolicy::kVllm}) {
    const Plan plan = make_plan(old_p, new_p, {}, policy);
    CHECK(plan.layers[0].rows ==
          Rows{{received(2, 1), unchanged(1, 1)}, {received(0, 0), unchanged(3, 1)}});
    CHECK(plan.layers[0].messages ==
          std::vector<Message>{msg(0, 1, {0}, {0}, {0}), msg(1, 0, {2}, {0}, {0})});
  }
}

TEST_CASE("vector 3: replication fills locally and copies", "[plan][vectors]") {
  const auto old_p = make_placement(2, 2, {{0, 1, 2, 3}});
  const auto new_p = make_placement(2, 2, {{0, 0, 1, 1}});
  const Plan plan = make_plan(old_p, new_p);
  CHECK(plan.layers[0].rows == Rows{{unchanged(0, 0), local(0, 0)}, {received(1, 0), copy(1, 0)}});
  CHECK(plan.layers[0].messages == std::vector<Message>{msg(0, 1, {1}, {1}, {0})});
  const PlanStats stats = summarize(plan);
  CHECK(stats.experts_moved == 1);
  CHECK(stats.min_experts_required == 1);
  CHECK(stats.ranks[0].rows_local == 1);
  CHECK(stats.ranks[1].rows_local == 1);  // the copy
  CHECK(stats.ranks[0].experts_sent == 1);
  CHECK(stats.ranks[1].experts_received == 1);
  CHECK(stats.traffic == std::vector<std::vector<int64_t>>{{0, 1}, {0, 0}});
}

TEST_CASE("vector 4: scale-up 2 -> 3 ranks, the new rank only receives", "[plan][vectors]") {
  const auto old_p = make_placement(2, 2, {{0, 1, 2, 3}});
  const auto new_p = make_placement(3, 2, {{0, 1, 2, 3, 1, 2}});
  const Plan plan = make_plan(old_p, new_p);
  CHECK(plan.num_ep_ranks() == 3);
  CHECK(plan.layers[0].rows == Rows{{unchanged(0, 0), unchanged(1, 1)},
                                    {unchanged(2, 0), unchanged(3, 1)},
                                    {received(1, 0), received(2, 1)}});
  CHECK(plan.layers[0].messages ==
        std::vector<Message>{msg(0, 2, {1}, {1}, {0}), msg(1, 2, {2}, {0}, {1})});
  const PlanStats stats = summarize(plan);
  CHECK(stats.ranks[2].experts_sent == 0);
  CHECK(stats.ranks[2].experts_received == 2);
}

TEST_CASE("scale-down 3 -> 2 ranks, the removed rank only sends", "[plan][vectors]") {
  const auto old_p = make_placement(3, 2, {{0, 1, 2, 3, 4, 5}});
  const auto new_p = make_placement(2, 3, {{0, 1, 4, 2, 3, 5}});
  const Plan plan = make_plan(old_p, new_p);
  CHECK(plan.layers[0].rows.size() == 2);
  CHECK(plan.layers[0].rows == Rows{{unchanged(0, 0), unchanged(1, 1), received(4, 2)},
                                    {unchanged(2, 0), unchanged(3, 1), received(5, 2)}});
  CHECK(plan.layers[0].messages ==
        std::vector<Message>{msg(2, 0, {4}, {0}, {2}), msg(2, 1, {5}, {1}, {2})});
}

TEST_CASE("one message per peer, experts ascending, lowest old row", "[plan][vectors]") {
  // Rank 0 holds 7 twice (rows 1 and 2); rank 1 needs 7, 5 and 6 from it.
  const auto old_p = make_placement(2, 4, {{6, 7, 7, 5, 0, 1, 2, 3}});
  const auto new_p = make_placement(2, 4, {{6, 7, 7, 5, 7, 6, 5, 7}});
  const Plan plan = make_plan(old_p, new_p);
  CHECK(plan.layers[0].messages ==
        std::vector<Message>{msg(0, 1, {5, 6, 7}, {3, 0, 1}, {2, 1, 0})});
  CHECK(plan.layers[0].rows[1] ==
        std::vector<RowPlan>{received(7, 0), received(6, 0), received(5, 0), copy(7, 0)});
  // Row 2 of rank 0 also holds 7 and stays; row 1 likewise.
  CHECK(plan.layers[0].rows[0][2] == unchanged(7, 2));
}

TEST_CASE("vector 5: an expert absent from old is an input error naming layer and expert",
          "[plan][vectors][errors]") {
  const auto old_p = make_placement(2, 2, {{0, 1, 2, 3}, {0, 1, 2, 3}});
  const auto new_p = make_placement(2, 2, {{0, 1, 2, 3}, {0, 4, 4, 5}});
  CHECK(problems_of(old_p, new_p) ==
        std::vector<std::string>{
            "layer 1, logical expert id 4: needed by the new placement (EP rank 0, row 1) but "
            "held by no slot of the old placement",
            "layer 1, logical expert id 5: needed by the new placement (EP rank 1, row 1) but "
            "held by no slot of the old placement"});
}

TEST_CASE("mismatched layer counts and shapes are input errors", "[plan][errors]") {
  const auto two = make_placement(2, 2, {{0, 1, 2, 3}, {0, 1, 2, 3}});
  const auto one = make_placement(2, 2, {{0, 1, 2, 3}});
  CHECK(problems_of(two, one) ==
        std::vector<std::string>{
            "the old placement has 2 layers and the new one 1; they must match"});
  auto short_layer = one;
  short_layer.physical_to_logical_map[0].pop_back();
  CHECK(problems_of(one, short_layer) ==
        std::vector<std::string>{"new placement, layer 0: 3 slots, expected ep_size 2 x 2 = 4"});
  auto bad_id = one;
  bad_id.physical_to_logical_map[0][2] = -3;
  CHECK(
      problems_of(bad_id, one) ==
      std::vector<std::string>{
          "old placement, layer 0, physical slot 2: logical expert id -3 is out of range [-1, 4)"});
}

TEST_CASE("vLLM rule: k = |R| / |S| consecutive receivers, then one extra each",
          "[plan][senders]") {
  // Expert 0 is held by ranks 0 and 1; ranks 2, 3, 4 need it: R = [2,3,4], k = 1,
  // sender 0 serves 2 and the extra R[2] = 4, sender 1 serves 3.
  const auto old_p = make_placement(5, 1, {{0, 0, 1, 2, 3}});
  const auto new_p = make_placement(5, 1, {{0, 0, 0, 0, 0}});
  const Plan plan = make_plan(old_p, new_p, {}, SenderPolicy::kVllm);
  CHECK(plan.layers[0].messages == std::vector<Message>{msg(0, 2, {0}, {0}, {0}),
                                                        msg(0, 4, {0}, {0}, {0}),
                                                        msg(1, 3, {0}, {0}, {0})});
}

// Ranks 0 and 1 both hold experts 0 and 1; rank 2 needs 0, rank 3 needs 1, rank 1 needs
// 2 and 3 (only on ranks 2 and 3). vLLM sends both 0 and 1 from rank 0 (k = 0: the first
// holder serves the single receiver); balanced splits them.
Placement skew_old() { return make_placement(4, 2, {{0, 1, 0, 1, 2, 2, 3, 3}}); }
Placement skew_new() { return make_placement(4, 2, {{0, 1, 2, 3, 0, 2, 1, 3}}); }

TEST_CASE("balanced senders beat vLLM's rule on a skewed layer", "[plan][senders]") {
  const Plan vllm = make_plan(skew_old(), skew_new(), {}, SenderPolicy::kVllm);
  CHECK(vllm.layers[0].messages ==
        std::vector<Message>{msg(0, 2, {0}, {0}, {0}), msg(0, 3, {1}, {1}, {0}),
                             msg(2, 1, {2}, {0}, {0}), msg(3, 1, {3}, {0}, {1})});
  const Plan balanced = make_plan(skew_old(), skew_new());
  CHECK(balanced.layers[0].messages ==
        std::vector<Message>{msg(0, 2, {0}, {0}, {0}), msg(1, 3, {1}, {1}, {0}),
                             msg(2, 1, {2}, {0}, {0}), msg(3, 1, {3}, {0}, {1})});
  CHECK(summarize(vllm).busiest_sender_experts == 2);
  CHECK(summarize(balanced).busiest_sender_experts == 1);
}

TEST_CASE("balanced prefers a sender on the receiver's node", "[plan][senders][topology]") {
  // Expert 0 on ranks 0 and 2; rank 3 needs it. Nodes {0,1} and {2,3}.
  const auto old_p = make_placement(4, 2, {{0, 1, 2, 3, 0, 4, 5, 6}});
  const auto new_p = make_placement(4, 2, {{0, 1, 2, 3, 0, 4, 0, 6}});
  CHECK(make_plan(old_p, new_p).layers[0].messages ==
        std::vector<Message>{msg(0, 3, {0}, {0}, {0})});
  const Topology two_per_node = Topology::blocks(4, 2);
  const Plan plan = make_plan(old_p, new_p, two_per_node);
  CHECK(plan.layers[0].messages == std::vector<Message>{msg(2, 3, {0}, {0}, {0})});
  CHECK(summarize(plan, two_per_node).inter_node_experts == 0);
  CHECK(summarize(make_plan(old_p, new_p, {}), two_per_node).inter_node_experts == 1);
}

TEST_CASE("balance wins over node preference", "[plan][senders][topology]") {
  // Rank 2 must send expert 4 to rank 1 (sole holder). Rank 3 needs 0, held by 0 and 2:
  // rank 2 is on its node but already busy, so rank 0 sends it and the max stays 1.
  const auto old_p = make_placement(4, 2, {{0, 1, 2, 3, 0, 4, 5, 6}});
  const auto new_p = make_placement(4, 2, {{0, 1, 2, 4, 0, 4, 0, 6}});
  const Topology two_per_node = Topology::blocks(4, 2);
  const Plan plan = make_plan(old_p, new_p, two_per_node);
  CHECK(plan.layers[0].messages ==
        std::vector<Message>{msg(0, 3, {0}, {0}, {0}), msg(2, 1, {4}, {1}, {1})});
  CHECK(summarize(plan, two_per_node).busiest_sender_experts == 1);
}

TEST_CASE("same-node senders are filled up to the optimal max load", "[plan][senders][topology]") {
  // Experts 0..3 each on ranks 0 (node 0) and 2 (node 1); rank 3 (node 1) needs 0 and 1,
  // rank 1 (node 0) needs 2 and 3. Load-first greedy alone could cross nodes; the optimum
  // (2 per sender) is reachable with every transfer inside a node.
  const auto old_p = make_placement(4, 4, {{0, 1, 2, 3, 8, 8, 8, 8, 0, 1, 2, 3, 9, 9, 9, 9}});
  const auto new_p = make_placement(4, 4, {{0, 1, 2, 3, 2, 3, 8, 8, 0, 1, 2, 3, 0, 1, 9, 9}});
  const Topology two_per_node = Topology::blocks(4, 2);
  const Plan plan = make_plan(old_p, new_p, two_per_node);
  CHECK(plan.layers[0].messages ==
        std::vector<Message>{msg(0, 1, {2, 3}, {2, 3}, {0, 1}), msg(2, 3, {0, 1}, {0, 1}, {0, 1})});
  CHECK(summarize(plan, two_per_node).inter_node_experts == 0);
}

TEST_CASE("ties go to the sender with less sent in earlier layers", "[plan][senders]") {
  // Each layer: expert 0 on ranks 0 and 1, rank 2 needs it.
  const Map old_map{0, 1, 0, 2, 3, 4};
  const Map new_map{0, 1, 0, 2, 0, 4};
  const auto old_p = make_placement(3, 2, {old_map, old_map, old_map});
  const auto new_p = make_placement(3, 2, {new_map, new_map, new_map});
  const Plan plan = make_plan(old_p, new_p);
  CHECK(plan.layers[0].messages == std::vector<Message>{msg(0, 2, {0}, {0}, {0})});
  CHECK(plan.layers[1].messages == std::vector<Message>{msg(1, 2, {0}, {0}, {0})});
  CHECK(plan.layers[2].messages == std::vector<Message>{msg(0, 2, {0}, {0}, {0})});
  // vLLM always picks the first holder.
  const Plan vllm = make_plan(old_p, new_p, {}, SenderPolicy::kVllm);
  CHECK(vllm.layers[1].messages == std::vector<Message>{msg(0, 2, {0}, {0}, {0})});
}

TEST_CASE("messages_from and messages_to select by rank in plan order", "[plan]") {
  const Plan plan = make_plan(skew_old(), skew_new());
  const auto from0 = messages_from(plan.layers[0], 0);
  REQUIRE(from0.size() == 1);
  CHECK(from0[0]->dst_rank == 2);
  const auto to1 = messages_to(plan.layers[0], 1);
  REQUIRE(to1.size() == 2);
  CHECK(to1[0]->src_rank == 2);
  CHECK(to1[1]->src_rank == 3);
  CHECK(messages_to(plan.layers[0], 0).empty());
}

TEST_CASE("summarize counts per rank, traffic and nodes", "[plan][stats]") {
  const Plan plan = make_plan(skew_old(), skew_new());
  const PlanStats stats = summarize(plan, Topology::blocks(4, 2));
  CHECK(stats.experts_moved == 4);
  CHECK(stats.min_experts_required == 4);
  CHECK(stats.busiest_sender_experts == 1);
  CHECK(stats.inter_node_experts == 4);  // 0->2, 1->3, 2->1, 3->1 all cross nodes {0,1}|{2,3}
  CHECK(stats.traffic ==
        std::vector<std::vector<int64_t>>{{0, 0, 1, 0}, {0, 0, 0, 1}, {0, 1, 0, 0}, {0, 1, 0, 0}});
  CHECK(stats.ranks[1].experts_received == 2);
  CHECK(stats.ranks[1].messages_received == 2);
  CHECK(stats.ranks[1].rows_unchanged == 0);
  CHECK(stats.ranks[2].rows_unchanged == 1);
  CHECK(stats.ranks[2].messages_sent == 1);
  CHECK(summarize(plan).inter_node_experts == 0);
}

TEST_CASE("ProcessMap distributes EP ranks in blocks", "[plan][process]") {
  const ProcessMap one_each{8, 8};
  for (int32_t r = 0; r < 8; ++r) CHECK(one_each.process_of(r) == r);
  const ProcessMap blocks{10, 4};  // blocks of 3: {0,1,2} {3,4,5} {6,7,8} {9}
  CHECK(blocks.process_of(2) == 0);
  CHECK(blocks.process_of(3) == 1);
  CHECK(blocks.process_of(9) == 3);
  CHECK(blocks.ep_ranks_of(1) == std::vector<int32_t>{3, 4, 5});
  CHECK(blocks.ep_ranks_of(3) == std::vector<int32_t>{9});
  const ProcessMap few{5, 4};  // blocks of 2: the last process hosts nothing
  CHECK(few.ep_ranks_of(3).empty());
  for (int32_t p = 0; p < 4; ++p) {
    for (int32_t r : few.ep_ranks_of(p)) CHECK(few.process_of(r) == p);
  }
  CHECK_THROWS_AS(ProcessMap({0, 1}).process_of(0), core::Error);
  CHECK_THROWS_AS(blocks.process_of(10), core::Error);
  CHECK_THROWS_AS(blocks.ep_ranks_of(4), core::Error);
}

}  // namespace
}  // namespace eplb::plan::test
