// load_pair: expert count carried over, separate EP sizes, the drop refusal, and vLLM's
// rank_mapping (scale-down pads the new map, scale-up keeps old ranks' numbers).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/placement/elastic.hpp"

namespace eplb::placement {
namespace {

using Problems = std::vector<std::string>;
using Map = std::vector<std::vector<int32_t>>;

PairOptions inline_pair(const std::string& old_json, const std::string& new_json) {
  PairOptions options;
  options.old_arg = old_json;
  options.new_arg = new_json;
  return options;
}

Problems pair_problems(const PairOptions& options) {
  try {
    load_pair(options);
  } catch (const core::Error& error) {
    CHECK(error.kind() == core::ErrorKind::kInput);
    return error.problems();
  }
  FAIL("load_pair accepted " << options.old_arg << " -> " << options.new_arg);
  return {};
}

std::string canonical(int ep_size, const std::string& map) {
  return R"({"format": "eplb-placement", "version": 1, "ep_size": )" + std::to_string(ep_size) +
         R"(, "physical_to_logical_map": )" + map + "}";
}

TEST_CASE("a dropped expert is refused, with exit code 2, naming layer and expert",
          "[placement][pair]") {
  auto options = inline_pair(canonical(2, "[[0,1,2,3]]"), canonical(2, "[[0,1,3,3]]"));
  CHECK(pair_problems(options) ==
        Problems{"'--new (inline JSON)' layer 0: logical expert 2 is held by '--old (inline "
                 "JSON)' but by no slot of the new placement: its weights would be lost "
                 "(--allow-dropping-experts drops them)"});
  options.allow_dropping_experts = true;
  CHECK(load_pair(options).new_placement.physical_to_logical_map == Map{{0, 1, 3, 3}});
}

TEST_CASE("the new placement takes the old one's expert count", "[placement][pair]") {
  // Derived on its own, [[0,1,0,0]] would have 2 experts against old's 4, and the count
  // would hide the real problem: experts 2 and 3 dropped.
  auto options = inline_pair(canonical(2, "[[0,1,2,3]]"), canonical(2, "[[0,1,0,0]]"));
  CHECK(pair_problems(options) ==
        Problems{"'--new (inline JSON)' layer 0: logical experts 2, 3 are held by '--old (inline "
                 "JSON)' but by no slot of the new placement: their weights would be lost "
                 "(--allow-dropping-experts drops them)"});
  options.allow_dropping_experts = true;
  CHECK(load_pair(options).new_placement.num_logical_experts == 4);
  // The checkpoint's count serves an old file without one.
  options.checkpoint_num_logical_experts = 6;
  const auto pair = load_pair(options);
  CHECK(pair.old_placement.num_logical_experts == 6);
  CHECK(pair.new_placement.num_logical_experts == 6);
}

TEST_CASE("old and new EP sizes for forms without one", "[placement][pair]") {
  auto options = inline_pair("[[0,1,2,3,4,5]]", "[[0,1,2,3,4,5]]");
  options.old_ep_size = 3;
  options.new_ep_size = 2;
  const auto pair = load_pair(options);
  CHECK(pair.old_placement.ep_size == 3);
  CHECK(pair.old_placement.num_slots_per_rank == 2);
  CHECK(pair.new_placement.ep_size == 2);
  CHECK(pair.new_placement.num_slots_per_rank == 3);
  // Without --new-ep-size the new one takes the old one's.
  options.new_ep_size.reset();
  CHECK(load_pair(options).new_placement.ep_size == 3);
  // A canonical file's own ep_size must agree.
  options = inline_pair(canonical(3, "[[0,1,2,3,4,5]]"), "[[0,1,2,3,4,5]]");
  options.old_ep_size = 2;
  CHECK(pair_problems(options) ==
        Problems{"'--old (inline JSON)' at /ep_size: ep_size 3 disagrees with --ep-size 2"});
}

TEST_CASE("rank mappings are parsed strictly", "[placement][pair][elastic]") {
  CHECK(parse_rank_mapping(R"({"0": 0, "1": -1, "2": 1})", "m").new_rank_of ==
        std::vector<int32_t>{0, -1, 1});
  const auto problems = [](const std::string& text) {
    try {
      parse_rank_mapping(text, "m.json");
    } catch (const core::Error& error) {
      return error.problems();
    }
    return Problems{"accepted"};
  };
  CHECK(problems(R"({"0": 0, "2": 1})") ==
        Problems{"'m.json' at /2: old rank \"2\" is not one of 0..1 (the keys must number the old "
                 "ranks)"});
  CHECK(problems(R"({"0": 1, "1": 1, "2": "x", "3": -2})") ==
        Problems{"'m.json' at /2: expected a new rank or -1 (removed), got string \"x\"",
                 "'m.json' at /3: expected a new rank or -1 (removed), got number -2",
                 "'m.json' at /1: old ranks 0 and 1 both map to new rank 1"});
  CHECK(problems(R"({"0": 0, "0": 1})") == Problems{"'m.json' at /0: duplicate key \"0\""});
  CHECK(problems("[0, 1]") ==
        Problems{"'m.json': expected vLLM's rank_mapping, an object {\"old_rank\": new_rank or "
                 "-1}, got an array"});
}

TEST_CASE("scale-down pads the new map to the old size, as vLLM does",
          "[placement][pair][elastic]") {
  // Old rank 1 of 3 is removed; old rank 2 becomes new rank 1.
  auto options = inline_pair("[[0,1, 2,3, 4,5]]", "[[0,4, 5,1]]");
  options.rank_mapping = parse_rank_mapping(R"({"0": 0, "1": -1, "2": 1})", "m");
  options.allow_dropping_experts = true;  // experts 2 and 3 leave with rank 1
  const auto pair = load_pair(options);
  CHECK(pair.old_placement.ep_size == 3);
  CHECK(pair.new_placement.ep_size == 3);
  CHECK(pair.new_placement.num_slots_per_rank == 2);
  CHECK(pair.new_placement.physical_to_logical_map == Map{{0, 4, -1, -1, 5, 1}});
  // The sizes the mapping implies must match the files.
  options.new_arg = "[[0,4,5,1,0,1]]";
  options.new_ep_size = 3;
  CHECK(pair_problems(options) ==
        Problems{"'--new (inline JSON)' has ep_size 3, but --rank-mapping keeps 2 of 3 ranks"});
}

TEST_CASE("scale-up keeps the old ranks' numbers", "[placement][pair][elastic]") {
  auto options = inline_pair("[[0,1, 2,3]]", "[[0,1, 2,3, 1,2]]");
  options.rank_mapping = parse_rank_mapping(R"({"0": 0, "1": 1})", "m");
  options.new_ep_size = 3;
  const auto pair = load_pair(options);
  CHECK(pair.old_placement.ep_size == 2);
  CHECK(pair.new_placement.ep_size == 3);
  CHECK(pair.new_placement.physical_to_logical_map == Map{{0, 1, 2, 3, 1, 2}});
  options.rank_mapping = parse_rank_mapping(R"({"0": 1, "1": 0})", "m");
  CHECK(pair_problems(options) ==
        Problems{"--rank-mapping renumbers old rank 0 as new rank 1 while adding ranks: scale-up "
                 "keeps the old ranks' numbers (map each old rank to itself)",
                 "--rank-mapping renumbers old rank 1 as new rank 0 while adding ranks: scale-up "
                 "keeps the old ranks' numbers (map each old rank to itself)"});
  // The mapping's size is the old EP size.
  options = inline_pair(canonical(2, "[[0,1,2,3]]"), "[[0,1,2,3]]");
  options.rank_mapping = parse_rank_mapping(R"({"0": 0, "1": 1, "2": -1})", "m");
  CHECK(pair_problems(options) ==
        Problems{"--rank-mapping has 3 old ranks, but the old placement has ep_size 2"});
}

TEST_CASE("same-size renumbering moves the new map into old-rank numbering",
          "[placement][pair][elastic]") {
  auto options = inline_pair("[[0,1, 2,3]]", "[[2,3, 0,1]]");
  options.rank_mapping = parse_rank_mapping(R"({"0": 1, "1": 0})", "m");
  // New rank 1 is old rank 0: it holds [0,1], what old rank 0 has. Nothing moves.
  CHECK(load_pair(options).new_placement.physical_to_logical_map == Map{{0, 1, 2, 3}});
}

}  // namespace
}  // namespace eplb::placement
