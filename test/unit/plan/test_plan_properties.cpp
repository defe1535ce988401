// Property tests over many seeded random placement pairs: the plan, executed literally on
// in-memory rows, yields the new placement; moves exactly the minimum; and balanced
// senders are optimal and never worse than vLLM's rule.
#include <catch2/catch.hpp>

#include <map>
#include <tuple>

#include "plan_test_util.hpp"

namespace eplb::plan::test {
namespace {

// Row content: the logical expert id it was loaded with. kUnwritten marks a row the plan
// forgot; kGarbage a read of a row that does not exist.
constexpr int32_t kUnwritten = -100;
constexpr int32_t kGarbage = -200;

int32_t read_old(const Placement& old_p, int32_t layer_idx, int32_t rank, int32_t row) {
  if (rank < 0 || rank >= old_p.ep_size || row < 0 || row >= old_p.num_slots_per_rank) {
    return kGarbage;
  }
  return old_p.expert_at(layer_idx, rank, row);
}

// Executes one layer literally: sends read old rows, receives write kReceived rows,
// kUnchanged/kLocal read old rows, kCopy reads new rows after the receives.
std::vector<Map> simulate_layer(const Plan& plan, const Placement& old_p, int32_t layer_idx) {
  const LayerPlan& layer = plan.layers[to_size(layer_idx)];
  std::vector<Map> out(to_size(plan.new_ep_size),
                       Map(to_size(plan.new_num_slots_per_rank), kUnwritten));
  for (const Message& m : layer.messages) {
    REQUIRE(m.dst_rank >= 0);
    REQUIRE(m.dst_rank < plan.new_ep_size);
    for (size_t i = 0; i < m.expert_ids.size(); ++i) {
      const int32_t row = m.dst_rows[i];
      REQUIRE(row >= 0);
      REQUIRE(row < plan.new_num_slots_per_rank);
      REQUIRE(out[to_size(m.dst_rank)][to_size(row)] == kUnwritten);  // no row received twice
      out[to_size(m.dst_rank)][to_size(row)] =
          read_old(old_p, layer_idx, m.src_rank, m.src_rows[i]);
    }
  }
  for (int32_t rank = 0; rank < plan.new_ep_size; ++rank) {
    for (int32_t row = 0; row < plan.new_num_slots_per_rank; ++row) {
      const RowPlan& rp = layer.rows[to_size(rank)][to_size(row)];
      if (rp.source == RowSource::kEmpty) out[to_size(rank)][to_size(row)] = -1;
      if (rp.source == RowSource::kUnchanged) {
        CHECK(rp.src_row == row);
        out[to_size(rank)][to_size(row)] = read_old(old_p, layer_idx, rank, rp.src_row);
      }
      if (rp.source == RowSource::kLocal)
        out[to_size(rank)][to_size(row)] = read_old(old_p, layer_idx, rank, rp.src_row);
    }
    for (int32_t row = 0; row < plan.new_num_slots_per_rank; ++row) {
      const RowPlan& rp = layer.rows[to_size(rank)][to_size(row)];
      if (rp.source != RowSource::kCopy) continue;
      REQUIRE(rp.src_row >= 0);
      REQUIRE(rp.src_row < plan.new_num_slots_per_rank);
      CHECK(layer.rows[to_size(rank)][to_size(rp.src_row)].source == RowSource::kReceived);
      out[to_size(rank)][to_size(row)] = out[to_size(rank)][to_size(rp.src_row)];
    }
  }
  return out;
}

// (a) executing the plan yields exactly the new placement.
void check_simulation(const Plan& plan, const Placement& old_p, const Placement& new_p) {
  for (int32_t layer_idx = 0; layer_idx < new_p.num_layers(); ++layer_idx) {
    const auto out = simulate_layer(plan, old_p, layer_idx);
    for (int32_t rank = 0; rank < new_p.ep_size; ++rank) {
      CHECK(out[to_size(rank)] == rank_rows(new_p, layer_idx, rank));
    }
  }
}

int32_t lowest_old_row(const Placement& old_p, int32_t layer_idx, int32_t rank, int32_t e) {
  const Map rows = rank_rows(old_p, layer_idx, rank);
  const auto it = std::find(rows.begin(), rows.end(), e);
  return it == rows.end() ? -1 : static_cast<int32_t>(it - rows.begin());
}

// (b) messages agree with both placements and with the row plans, one entry per receive.
void check_messages(const Plan& plan, const Placement& old_p, const Placement& new_p) {
  for (int32_t layer_idx = 0; layer_idx < new_p.num_layers(); ++layer_idx) {
    const LayerPlan& layer = plan.layers[to_size(layer_idx)];
    std::map<std::pair<int32_t, int32_t>, int> entries_per_row;  // (dst, row) -> count
    for (size_t k = 0; k < layer.messages.size(); ++k) {
      const Message& m = layer.messages[k];
      if (k > 0) {
        const Message& prev = layer.messages[k - 1];
        CHECK(std::tie(prev.src_rank, prev.dst_rank) < std::tie(m.src_rank, m.dst_rank));
      }
      REQUIRE(!m.expert_ids.empty());
      REQUIRE(m.src_rows.size() == m.expert_ids.size());
      REQUIRE(m.dst_rows.size() == m.expert_ids.size());
      CHECK(m.src_rank != m.dst_rank);
      CHECK(std::adjacent_find(m.expert_ids.begin(), m.expert_ids.end(), std::greater_equal<>()) ==
            m.expert_ids.end());
      for (size_t i = 0; i < m.expert_ids.size(); ++i) {
        const int32_t e = m.expert_ids[i];
        CHECK(m.src_rows[i] == lowest_old_row(old_p, layer_idx, m.src_rank, e));
        CHECK(new_p.expert_at(layer_idx, m.dst_rank, m.dst_rows[i]) == e);
        CHECK(layer.rows[to_size(m.dst_rank)][to_size(m.dst_rows[i])] == received(e, m.src_rank));
        ++entries_per_row[{m.dst_rank, m.dst_rows[i]}];
      }
    }
    for (int32_t rank = 0; rank < new_p.ep_size; ++rank) {
      for (int32_t row = 0; row < new_p.num_slots_per_rank; ++row) {
        const bool is_received =
            layer.rows[to_size(rank)][to_size(row)].source == RowSource::kReceived;
        const auto it = entries_per_row.find({rank, row});
        CHECK((it == entries_per_row.end() ? 0 : it->second) == (is_received ? 1 : 0));
      }
    }
  }
}

// (d) each rank receives exactly the distinct experts it lacks; the total is the minimum.
void check_minimum(const Plan& plan, const Placement& old_p, const Placement& new_p) {
  int64_t expected_min = 0;
  for (int32_t layer_idx = 0; layer_idx < new_p.num_layers(); ++layer_idx) {
    for (int32_t rank = 0; rank < new_p.ep_size; ++rank) {
      Map got;
      for (const Message* m : messages_to(plan.layers[to_size(layer_idx)], rank)) {
        got.insert(got.end(), m->expert_ids.begin(), m->expert_ids.end());
      }
      std::sort(got.begin(), got.end());
      const Map want = lacking(old_p, new_p, layer_idx, rank);
      CHECK(got == want);
      expected_min += static_cast<int64_t>(want.size());
    }
  }
  const PlanStats stats = summarize(plan);
  CHECK(stats.min_experts_required == expected_min);
  CHECK(stats.experts_moved == expected_min);
}

// The (expert, receiver) transfers of a layer with their possible senders.
std::vector<std::vector<int32_t>> job_holders(const Placement& old_p, const Placement& new_p,
                                              int32_t layer_idx) {
  std::vector<std::vector<int32_t>> out;
  for (int32_t rank = 0; rank < new_p.ep_size; ++rank) {
    for (int32_t e : lacking(old_p, new_p, layer_idx, rank)) {
      std::vector<int32_t> holders;
      for (int32_t r = 0; r < old_p.ep_size; ++r) {
        if (lowest_old_row(old_p, layer_idx, r, e) >= 0) holders.push_back(r);
      }
      out.push_back(holders);
    }
  }
  return out;
}

// (e) balanced is optimal (an independent b-matching says max-1 is infeasible) and never
// worse than vLLM's rule; the kVllm plan follows an independent implementation of the rule.
void check_senders(const Plan& balanced, const Plan& vllm, const Placement& old_p,
                   const Placement& new_p) {
  const auto best = busiest_per_layer(balanced);
  const auto rule = busiest_per_layer(vllm);
  const int32_t num_experts = std::max(old_p.num_logical_experts, new_p.num_logical_experts);
  for (int32_t layer_idx = 0; layer_idx < new_p.num_layers(); ++layer_idx) {
    const int64_t busiest = best[to_size(layer_idx)];
    CHECK(busiest <= rule[to_size(layer_idx)]);
    CapFeasibility flow(job_holders(old_p, new_p, layer_idx), balanced.num_ep_ranks());
    CHECK(flow.feasible(static_cast<int32_t>(busiest)));
    if (busiest > 0) CHECK_FALSE(flow.feasible(static_cast<int32_t>(busiest) - 1));
    const auto ref = vllm_senders(old_p, new_p, layer_idx, num_experts, vllm.num_ep_ranks());
    for (const Message& m : vllm.layers[to_size(layer_idx)].messages) {
      for (int32_t e : m.expert_ids) CHECK(ref[to_size(e)][to_size(m.dst_rank)] == m.src_rank);
    }
  }
}

void check_pair(const Placement& old_p, const Placement& new_p, const Topology& topology) {
  const Plan balanced = make_plan(old_p, new_p, topology);
  const Plan vllm = make_plan(old_p, new_p, topology, SenderPolicy::kVllm);
  REQUIRE(balanced.layers.size() == static_cast<size_t>(new_p.num_layers()));
  for (const Plan* plan : {&balanced, &vllm}) {
    check_simulation(*plan, old_p, new_p);
    check_messages(*plan, old_p, new_p);
    check_minimum(*plan, old_p, new_p);
  }
  check_senders(balanced, vllm, old_p, new_p);
  // (f) deterministic: again, and from copies.
  const Placement old_copy = old_p, new_copy = new_p;
  CHECK(make_plan(old_copy, new_copy, topology) == balanced);
  CHECK(make_plan(old_p, new_p, topology, SenderPolicy::kVllm) == vllm);
  // Only which ranks share a node matters, not how the nodes are numbered.
  if (topology.known()) {
    Topology relabelled = topology;
    for (int32_t& node : relabelled.node_of_rank) node = 1000 - 7 * node;
    CHECK(make_plan(old_p, new_p, relabelled) == balanced);
    CHECK(summarize(balanced, relabelled).inter_node_experts ==
          summarize(balanced, topology).inter_node_experts);
  }
}

RandomShape random_shape(std::mt19937_64& rng, bool elastic) {
  auto uniform = [&](int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
  };
  RandomShape s{};
  s.num_layers = uniform(1, 3);
  s.old_ep = uniform(1, 8);
  s.old_rows = uniform(1, 5);
  s.new_ep = elastic ? uniform(1, 8) : s.old_ep;
  s.new_rows = elastic ? uniform(1, 5) : s.old_rows;
  // Fewer experts than slots gives replicas; more gives experts absent from a layer.
  s.num_experts = uniform(1, s.old_ep * s.old_rows + 2);
  return s;
}

// Unknown, contiguous blocks, or any node per rank (round-robin, uneven, scattered).
Topology random_topology(std::mt19937_64& rng, const Placement& old_p, const Placement& new_p) {
  static constexpr int32_t kChoices[] = {0, 0, 1, 2, 3, 4, -1, -1};
  const int32_t num_ranks = std::max(old_p.ep_size, new_p.ep_size);
  const int32_t choice = kChoices[std::uniform_int_distribution<int>(0, 7)(rng)];
  if (choice >= 0) return Topology::blocks(num_ranks, choice);
  Topology scattered;
  const int32_t num_nodes = std::uniform_int_distribution<int32_t>(1, 4)(rng);
  for (int32_t r = 0; r < num_ranks; ++r) {
    scattered.node_of_rank.push_back(std::uniform_int_distribution<int32_t>(0, num_nodes - 1)(rng));
  }
  return scattered;
}

TEST_CASE("random placement pairs: same ep_size", "[plan][property]") {
  std::mt19937_64 rng(20261128);
  for (int i = 0; i < 1200; ++i) {
    const auto [old_p, new_p] = random_pair(rng, random_shape(rng, false));
    INFO("case " << i);
    check_pair(old_p, new_p, random_topology(rng, old_p, new_p));
  }
}

TEST_CASE("random placement pairs: elastic ep_size and slots per rank", "[plan][property]") {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 400; ++i) {
    const auto [old_p, new_p] = random_pair(rng, random_shape(rng, true));
    INFO("case " << i);
    check_pair(old_p, new_p, random_topology(rng, old_p, new_p));
  }
}

TEST_CASE("random placement pairs: larger layers", "[plan][property]") {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 30; ++i) {
    const RandomShape shape{2, 16, 9, 16, 9, 16 * 8};
    const auto [old_p, new_p] = random_pair(rng, shape);
    INFO("case " << i);
    check_pair(old_p, new_p, Topology::blocks(16, i % 2 == 0 ? 0 : 8));
  }
}

TEST_CASE("old == new moves nothing", "[plan][property]") {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 300; ++i) {
    const auto pair = random_pair(rng, random_shape(rng, false));
    const Placement& p = pair.first;
    for (auto policy : {SenderPolicy::kBalanced, SenderPolicy::kVllm}) {
      const Plan plan = make_plan(p, p, random_topology(rng, p, p), policy);
      for (const LayerPlan& layer : plan.layers) {
        CHECK(layer.messages.empty());
        for (const auto& rows : layer.rows) {
          for (const RowPlan& row : rows) {
            CHECK((row.source == RowSource::kUnchanged || row.source == RowSource::kEmpty));
          }
        }
      }
      CHECK(summarize(plan).experts_moved == 0);
    }
  }
}

TEST_CASE("balanced is strictly better than vLLM's rule somewhere", "[plan][property]") {
  // Guards against a balanced policy that silently degenerates into the vLLM rule.
  std::mt19937_64 rng(11);
  int64_t balanced_total = 0, vllm_total = 0;
  for (int i = 0; i < 50; ++i) {
    const auto [old_p, new_p] = random_pair(rng, RandomShape{4, 8, 6, 8, 6, 40});
    balanced_total += summarize(make_plan(old_p, new_p)).busiest_sender_experts;
    vllm_total +=
        summarize(make_plan(old_p, new_p, {}, SenderPolicy::kVllm)).busiest_sender_experts;
  }
  CHECK(balanced_total < vllm_total);
}

}  // namespace
}  // namespace eplb::plan::test
