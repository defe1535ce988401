// The real rank -> node map: built from processes' hosts (round-robin `--map-by node`,
// uneven nodes, several EP ranks per process), and the node-aware sender choice and
// inter-node counts following it rather than contiguous blocks.
#include <catch2/catch.hpp>

#include "eplb/core/error.hpp"
#include "plan_test_util.hpp"

namespace eplb::plan::test {
namespace {

using Nodes = std::vector<int32_t>;

TEST_CASE("node_indices numbers hosts in order of first appearance", "[plan][topology]") {
  CHECK(node_indices({"b", "a", "b", "c", "a"}) == Nodes{0, 1, 0, 2, 1});
  CHECK(node_indices({"n0", "n0", "n0"}) == Nodes{0, 0, 0});
  CHECK(node_indices({}).empty());
}

TEST_CASE("Topology::blocks is the contiguous layout", "[plan][topology]") {
  CHECK(Topology::blocks(5, 2).node_of_rank == Nodes{0, 0, 1, 1, 2});
  CHECK(Topology::blocks(5, 2).num_nodes() == 3);
  CHECK_FALSE(Topology::blocks(5, 0).known());
  CHECK_FALSE(Topology::blocks(0, 2).known());
  CHECK(Topology{}.num_nodes() == 0);
}

TEST_CASE("topology_of_processes follows where each process runs", "[plan][topology]") {
  // mpirun --map-by node on two nodes: processes alternate.
  const auto hosts = node_indices({"a", "b", "a", "b"});
  CHECK(topology_of_processes(ProcessMap{4, 4}, hosts).node_of_rank == Nodes{0, 1, 0, 1});
  // Uneven nodes: three processes on the first host, one on the second.
  CHECK(topology_of_processes(ProcessMap{4, 4}, node_indices({"a", "a", "a", "b"})).node_of_rank ==
        Nodes{0, 0, 0, 1});
  // Several EP ranks per process: 8 EP ranks on 4 processes (blocks of two), round-robin.
  CHECK(topology_of_processes(ProcessMap{8, 4}, hosts).node_of_rank ==
        Nodes{0, 0, 1, 1, 0, 0, 1, 1});
  // Uneven blocks: 5 EP ranks on 3 processes host 2, 2, 1.
  CHECK(topology_of_processes(ProcessMap{5, 3}, Nodes{1, 0, 1}).node_of_rank ==
        Nodes{1, 1, 0, 0, 1});
  // More processes than blocks: the last processes host nothing.
  CHECK(topology_of_processes(ProcessMap{2, 4}, Nodes{0, 1, 0, 1}).node_of_rank == Nodes{0, 1});
  CHECK_THROWS_AS(topology_of_processes(ProcessMap{4, 4}, Nodes{0, 1}), core::Error);
  CHECK_THROWS_AS(topology_of_processes(ProcessMap{4, 4}, Nodes{0, 1, -1, 0}), core::Error);
}

// Expert 0 on ranks 0 and 1; rank 3 needs it (in place of expert 6).
Placement holders_old() { return make_placement(4, 2, {{0, 1, 0, 2, 3, 4, 5, 6}}); }
Placement holders_new() { return make_placement(4, 2, {{0, 1, 0, 2, 3, 4, 5, 0}}); }

TEST_CASE("round-robin nodes: the sender on the receiver's real node", "[plan][topology]") {
  // Contiguous blocks would put ranks 0 and 1 together, both away from rank 3: rank 0
  // sends. Under --map-by node, rank 1 shares rank 3's node and sends instead.
  const Topology blocks = Topology::blocks(4, 2);
  const Plan assumed = make_plan(holders_old(), holders_new(), blocks);
  REQUIRE(assumed.layers[0].messages.size() == 1);
  CHECK(assumed.layers[0].messages[0].src_rank == 0);

  const Topology round_robin{{0, 1, 0, 1}};
  const Plan real = make_plan(holders_old(), holders_new(), round_robin);
  REQUIRE(real.layers[0].messages.size() == 1);
  CHECK(real.layers[0].messages[0].src_rank == 1);
  CHECK(real.layers[0].messages[0].dst_rank == 3);
  CHECK(summarize(real, round_robin).inter_node_experts == 0);
  // The block assumption's plan, on the real layout, crosses nodes.
  CHECK(summarize(assumed, round_robin).inter_node_experts == 1);
}

TEST_CASE("uneven nodes: ranks 0..2 on one node, rank 3 alone", "[plan][topology]") {
  // Expert 0 on ranks 1 and 3; rank 2 needs it: rank 1 is on its node.
  const auto old_p = make_placement(4, 2, {{7, 8, 0, 1, 2, 3, 0, 4}});
  const auto new_p = make_placement(4, 2, {{7, 8, 0, 1, 0, 3, 0, 4}});
  const Topology uneven{{0, 0, 0, 1}};
  const Plan plan = make_plan(old_p, new_p, uneven);
  REQUIRE(plan.layers[0].messages.size() == 1);
  CHECK(plan.layers[0].messages[0].src_rank == 1);
  CHECK(summarize(plan, uneven).inter_node_experts == 0);
  // Blocks of two would think rank 3 (node 1) is on rank 2's node.
  const Plan blocks = make_plan(old_p, new_p, Topology::blocks(4, 2));
  CHECK(blocks.layers[0].messages[0].src_rank == 3);
  CHECK(summarize(blocks, uneven).inter_node_experts == 1);
}

TEST_CASE("several EP ranks per process: nodes follow the processes", "[plan][topology]") {
  // 8 EP ranks on 4 processes, processes round-robin over 2 nodes: EP nodes 0,0,1,1,0,0,1,1.
  // Expert 0 on EP ranks 2 and 4; EP rank 7 (node 1) needs it: EP rank 2 (node 1) sends.
  Map old_map(16), new_map;
  for (int32_t i = 0; i < 16; ++i) old_map[static_cast<size_t>(i)] = i + 1;
  old_map[4] = 0;  // EP rank 2, row 0
  old_map[8] = 0;  // EP rank 4, row 0
  new_map = old_map;
  new_map[15] = 0;  // EP rank 7, row 1
  const auto old_p = make_placement(8, 2, {old_map});
  const auto new_p = make_placement(8, 2, {new_map});
  const Topology topology =
      topology_of_processes(ProcessMap{8, 4}, node_indices({"x", "y", "x", "y"}));
  const Plan plan = make_plan(old_p, new_p, topology);
  REQUIRE(plan.layers[0].messages.size() == 1);
  CHECK(plan.layers[0].messages[0].src_rank == 2);
  CHECK(summarize(plan, topology).inter_node_experts == 0);
}

TEST_CASE("a node layout of the wrong size is a usage error", "[plan][topology]") {
  const Topology three{{0, 1, 0}};
  try {
    make_plan(holders_old(), holders_new(), three);
    FAIL("accepted a layout of 3 ranks for 4");
  } catch (const core::Error& e) {
    CHECK(e.kind() == core::ErrorKind::kUsage);
    CHECK(e.problems().at(0) == "the node layout places 3 EP ranks, but the placements have 4");
  }
  const Plan plan = make_plan(holders_old(), holders_new());
  CHECK_THROWS_AS(summarize(plan, three), core::Error);
  CHECK_THROWS_AS(make_plan(holders_old(), holders_new(), Topology{{0, 1, 0, -2}}), core::Error);
}

}  // namespace
}  // namespace eplb::plan::test
