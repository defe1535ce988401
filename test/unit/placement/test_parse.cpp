// parse_placement: the accepted forms, derivations, and the exact text of every error.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::placement {
namespace {

using Problems = std::vector<std::string>;

ParseOptions named(const std::string& name, std::optional<int32_t> ep_size = std::nullopt) {
  ParseOptions options;
  options.source_name = name;
  options.ep_size = ep_size;
  return options;
}

// The problems of the input error parse_placement must throw for `text`.
Problems parse_problems(const std::string& text, const ParseOptions& options = named("new.json")) {
  try {
    parse_placement(text, options);
  } catch (const core::Error& error) {
    CHECK(error.kind() == core::ErrorKind::kInput);
    return error.problems();
  }
  FAIL("parse_placement accepted: " << text);
  return {};
}

// A canonical document with `extra` spliced in before the map.
std::string canonical(const std::string& extra, const std::string& map) {
  return R"({"format": "eplb-placement", "version": 1, )" + extra +
         R"( "physical_to_logical_map": )" + map + "}";
}

// The example of docs/PLACEMENT.md.
const std::string kDocExample =
    R"({"format": "eplb-placement", "version": 1, "ep_size": 4, "num_slots_per_rank": 3,
        "num_logical_experts": 10,
        "physical_to_logical_map": [[0,1,2, 3,4,5, 6,7,8, 9,0,1],
                                    [9,8,7, 6,5,4, 3,2,1, 0,-1,-1]]})";

TEST_CASE("canonical form: every field is read", "[placement][parse]") {
  const Placement p = parse_placement(kDocExample, named("new.json"));
  CHECK(p.ep_size == 4);
  CHECK(p.num_slots_per_rank == 3);
  CHECK(p.num_logical_experts == 10);
  REQUIRE(p.num_layers() == 2);
  CHECK(p.num_slots() == 12);
  CHECK(p.physical_to_logical_map[0] == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1});
  CHECK(p.physical_to_logical_map[1] == std::vector<int32_t>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -1});
  // Slot p lives on rank p / 3, row p % 3.
  CHECK(p.expert_at(1, 3, 0) == 0);
  CHECK(p.expert_at(0, 2, 1) == 7);
}

TEST_CASE("canonical form: slots per rank and expert count are derived", "[placement][parse]") {
  const Placement p =
      parse_placement(canonical(R"("ep_size": 2,)", "[[0,5,-1,3],[5,5,0,0]]"), named("x"));
  CHECK(p.ep_size == 2);
  CHECK(p.num_slots_per_rank == 2);
  CHECK(p.num_logical_experts == 6);  // max id 5, plus one
}

TEST_CASE("canonical form: the caller's expert count fills in a missing one",
          "[placement][parse]") {
  ParseOptions options = named("x");
  options.num_logical_experts = 256;
  const Placement p = parse_placement(canonical(R"("ep_size": 2,)", "[[0,1,2,3]]"), options);
  CHECK(p.num_logical_experts == 256);
}

TEST_CASE("canonical form: --ep-size that agrees is accepted", "[placement][parse]") {
  CHECK(parse_placement(kDocExample, named("new.json", 4)).ep_size == 4);
}

TEST_CASE("SGLang form takes ep_size from the caller", "[placement][parse]") {
  const Placement p =
      parse_placement(R"({"physical_to_logical_map": [[0,1,2,3],[3,2,1,0]]})", named("s", 2));
  CHECK(p.ep_size == 2);
  CHECK(p.num_slots_per_rank == 2);
  CHECK(p.num_logical_experts == 4);
  CHECK(p.physical_to_logical_map[1] == std::vector<int32_t>{3, 2, 1, 0});
}

TEST_CASE("bare 2-D array takes ep_size from the caller", "[placement][parse]") {
  const Placement p = parse_placement("[[0,1,2,3,4,5]]", named("b", 3));
  CHECK(p.ep_size == 3);
  CHECK(p.num_slots_per_rank == 2);
  CHECK(p.num_logical_experts == 6);
}

TEST_CASE("SGLang and bare forms without ep_size ask for --ep-size", "[placement][parse]") {
  CHECK(parse_problems(R"({"physical_to_logical_map": [[0,1]]})") ==
        Problems{"'new.json': the SGLang form does not give ep_size: pass --ep-size"});
  CHECK(parse_problems("[[0,1]]") ==
        Problems{"'new.json': the bare array form does not give ep_size: pass --ep-size"});
  CHECK(parse_problems("[[0,1]]", named("new.json", 0)) ==
        Problems{"'new.json': --ep-size must be positive, got 0"});
}

TEST_CASE("malformed JSON names line, column and byte", "[placement][parse][errors]") {
  CHECK(parse_problems("{\"ep_size\": 4,\n  \"format\": ]}") ==
        Problems{"'new.json': malformed JSON at line 2, column 13 (byte 28): syntax error while "
                 "parsing value - unexpected ']'; expected '[', '{', or a literal"});
  CHECK(parse_problems("") ==
        Problems{"'new.json': malformed JSON at line 1, column 1 (byte 1): syntax error while "
                 "parsing value - unexpected end of input; expected '[', '{', or a literal"});
}

TEST_CASE("wrong types are reported at their location", "[placement][parse][errors]") {
  CHECK(parse_problems(canonical(R"("ep_size": "4",)", "[[0,1]]")) ==
        Problems{"'new.json' at /ep_size: expected an integer, got string \"4\""});
  CHECK(
      parse_problems(canonical(R"("ep_size": 2,)", R"([[0,"x"],[1.5,null]])")) ==
      Problems{"'new.json' at /physical_to_logical_map/0/1: expected an integer, got string \"x\"",
               "'new.json' at /physical_to_logical_map/1/0: expected an integer, got number 1.5",
               "'new.json' at /physical_to_logical_map/1/1: expected an integer, got null"});
  CHECK(parse_problems(canonical(R"("ep_size": 1,)", "[[0],{}]")) ==
        Problems{"'new.json' at /physical_to_logical_map/1: expected an array of logical expert "
                 "ids, got an object"});
  CHECK(parse_problems(canonical(R"("ep_size": 1,)", "7")) ==
        Problems{"'new.json' at /physical_to_logical_map: expected an array of layers, got "
                 "number 7"});
  CHECK(parse_problems(canonical(R"("ep_size": 2,)", "[0,1]")) ==
        Problems{"'new.json' at /physical_to_logical_map: expected an array of layers (a 2-D "
                 "array), got a 1-D array"});
  // (The full text of the unrecognised-form error is pinned in test_forms.cpp.)
  const Problems hello = parse_problems(R"("hello")");
  REQUIRE(hello.size() == 1);
  CHECK(
      hello[0].starts_with("'new.json': not a placement in any accepted form (found string "
                           "\"hello\", not an object or an array); accepted forms: "));
}

TEST_CASE("format and version are checked", "[placement][parse][errors]") {
  const std::string map = R"("physical_to_logical_map": [[0,1]]})";
  CHECK(parse_problems(R"({"format": "eplb", "version": 1, "ep_size": 2, )" + map) ==
        Problems{"'new.json' at /format: unknown format \"eplb\" (expected \"eplb-placement\")"});
  CHECK(parse_problems(R"({"format": 1, "version": 1, "ep_size": 2, )" + map) ==
        Problems{"'new.json' at /format: expected a string, got number 1"});
  CHECK(parse_problems(R"({"format": "eplb-placement", "version": 2, "ep_size": 2, )" + map) ==
        Problems{"'new.json' at /version: unsupported version 2 (this build reads version 1)"});
  CHECK(parse_problems(R"({"ep_size": 2, )" + map) ==
        Problems{"'new.json': missing required key \"format\"",
                 "'new.json': missing required key \"version\""});
  CHECK(parse_problems(R"({"format": "eplb-placement", "version": 1})") ==
        Problems{"'new.json': missing required key \"ep_size\"",
                 "'new.json': missing required key \"physical_to_logical_map\""});
}

TEST_CASE("unknown and duplicate top-level keys are reported", "[placement][parse][errors]") {
  CHECK(parse_problems(canonical(R"("ep_size": 2, "ep_sise": 2, "a/b": 0,)", "[[0,1]]")) ==
        Problems{"'new.json' at /a~1b: unknown key \"a/b\"",
                 "'new.json' at /ep_sise: unknown key \"ep_sise\""});
  CHECK(parse_problems(canonical(R"("ep_size": 2, "ep_size": 2,)", "[[0,1]]")) ==
        Problems{"'new.json' at /ep_size: duplicate key \"ep_size\""});
}

TEST_CASE("counts must be positive 32-bit integers", "[placement][parse][errors]") {
  CHECK(parse_problems(canonical(R"("ep_size": 0,)", "[[0,1]]")) ==
        Problems{"'new.json' at /ep_size: ep_size must be positive, got 0"});
  CHECK(parse_problems(canonical(R"("ep_size": -3,)", "[[0,1]]")) ==
        Problems{"'new.json' at /ep_size: ep_size must be positive, got -3"});
  CHECK(parse_problems(canonical(R"("ep_size": 5000000000,)", "[[0,1]]")) ==
        Problems{"'new.json' at /ep_size: ep_size 5000000000 is too large (at most 2147483647)"});
  CHECK(
      parse_problems(canonical(R"("ep_size": 2, "num_logical_experts": 0,)", "[[0,1]]")) ==
      Problems{"'new.json' at /num_logical_experts: num_logical_experts must be positive, got 0"});
}

TEST_CASE("layer shape problems", "[placement][parse][errors]") {
  CHECK(parse_problems(canonical(R"("ep_size": 2,)", "[]")) ==
        Problems{"'new.json' at /physical_to_logical_map: no layers"});
  CHECK(
      parse_problems(canonical(R"("ep_size": 2,)", "[[0,1,2,3],[0,1,2],[0,1,2,3],[]]")) ==
      Problems{"'new.json' at /physical_to_logical_map/1: layer 1 has 3 slots, but layer 0 has 4",
               "'new.json' at /physical_to_logical_map/3: layer 3 has 0 slots, but layer 0 has 4"});
  // The most common length is the reference, so one odd first layer yields one message.
  CHECK(
      parse_problems(canonical(R"("ep_size": 2,)", "[[0,1,2],[0,1,2,3],[3,2,1,0]]")) ==
      Problems{"'new.json' at /physical_to_logical_map/0: layer 0 has 3 slots, but layer 1 has 4"});
  CHECK(parse_problems(canonical(R"("ep_size": 2,)", "[[]]")) ==
        Problems{"'new.json' at /physical_to_logical_map/0: layer has no slots"});
  CHECK(parse_problems(canonical(R"("ep_size": 4,)", "[[0,1,2,3,4,5]]")) ==
        Problems{"'new.json' at /physical_to_logical_map: 6 slots per layer is not divisible by "
                 "ep_size 4"});
  CHECK(parse_problems("[[0,1,2]]", named("new.json", 2)) ==
        Problems{"'new.json': 3 slots per layer is not divisible by ep_size 2"});
  CHECK(parse_problems(canonical(R"("ep_size": 4, "num_slots_per_rank": 4,)", "[[0,1,2,3]]")) ==
        Problems{"'new.json' at /num_slots_per_rank: num_slots_per_rank 4 times ep_size 4 is 16, "
                 "but layers have 4 slots"});
}

TEST_CASE("logical expert ids must lie in [-1, num_logical_experts)",
          "[placement][parse][errors]") {
  std::string row = "[";
  for (int i = 0; i < 32; ++i) row += (i == 17 ? std::string("300") : std::to_string(i)) + ",";
  row.back() = ']';
  std::string ok_row = "[";
  for (int i = 0; i < 32; ++i) ok_row += std::to_string(i) + ",";
  ok_row.back() = ']';
  const std::string map = "[" + ok_row + "," + ok_row + "," + ok_row + "," + row + "]";
  CHECK(parse_problems(canonical(R"("ep_size": 1, "num_logical_experts": 256,)", map)) ==
        Problems{"'new.json' at /physical_to_logical_map/3/17: logical expert id 300 is out of "
                 "range [-1, 256)"});
  // With a derived count only the lower bound can be broken.
  CHECK(parse_problems(canonical(R"("ep_size": 2,)", "[[-2,1,-1,7]]")) ==
        Problems{"'new.json' at /physical_to_logical_map/0/0: logical expert id -2 is out of "
                 "range [-1, 8)"});
  CHECK(parse_problems(canonical(R"("ep_size": 2,)", "[[-1,-1]]")) ==
        Problems{"'new.json' at /physical_to_logical_map: every slot is empty (-1), so "
                 "num_logical_experts cannot be derived: give it explicitly"});
}

TEST_CASE("a badly broken layer is summarised after 20 problems", "[placement][parse][errors]") {
  std::string row = "[";
  for (int i = 0; i < 25; ++i) row += "\"x\",";
  row.back() = ']';
  const Problems problems = parse_problems(canonical(R"("ep_size": 1,)", "[" + row + "]"));
  REQUIRE(problems.size() == 21);
  CHECK(problems[19] ==
        "'new.json' at /physical_to_logical_map/0/19: expected an integer, got string \"x\"");
  CHECK(problems[20] ==
        "'new.json' at /physical_to_logical_map/0: ... and 5 more problems in "
        "layer 0");
}

TEST_CASE("the caller's values must agree with the file", "[placement][parse][errors]") {
  CHECK(parse_problems(kDocExample, named("new.json", 8)) ==
        Problems{"'new.json' at /ep_size: ep_size 4 disagrees with --ep-size 8"});
  ParseOptions options = named("new.json");
  options.num_logical_experts = 12;
  CHECK(parse_problems(kDocExample, options) ==
        Problems{"'new.json' at /num_logical_experts: num_logical_experts 10 disagrees with the "
                 "expected 12"});
  options.num_logical_experts = 4;  // below the file's ids: the range check uses the file's 10
  CHECK_NOTHROW(parse_placement(canonical(R"("ep_size": 2,)", "[[0,1,2,3]]"), options));
  CHECK(parse_problems(canonical(R"("ep_size": 2,)", "[[0,1,2,4]]"), options) ==
        Problems{"'new.json' at /physical_to_logical_map/0/3: logical expert id 4 is out of "
                 "range [-1, 4)"});
}

TEST_CASE("every problem of a document is reported in one error", "[placement][parse][errors]") {
  const std::string text = R"({"format": "eplb-placement", "version": 3, "ep_size": 2,
    "num_logical_experts": 4, "extra": true,
    "physical_to_logical_map": [[0,1,2,9],[0,"1",2],[4,-5,0,0]]})";
  CHECK(parse_problems(text, named("new.json", 4)) ==
        Problems{
            "'new.json' at /extra: unknown key \"extra\"",
            "'new.json' at /version: unsupported version 3 (this build reads version 1)",
            "'new.json' at /ep_size: ep_size 2 disagrees with --ep-size 4",
            "'new.json' at /physical_to_logical_map/1: layer 1 has 3 slots, but layer 0 has 4",
            "'new.json' at /physical_to_logical_map/0/3: logical expert id 9 is out of range "
            "[-1, 4)",
            "'new.json' at /physical_to_logical_map/1/1: expected an integer, got string \"1\"",
            "'new.json' at /physical_to_logical_map/2/0: logical expert id 4 is out of range "
            "[-1, 4)",
            "'new.json' at /physical_to_logical_map/2/1: logical expert id -5 is out of range "
            "[-1, 4)",
        });
}

TEST_CASE("placement: a fallback ep_size serves the SGLang and bare forms, never the canonical") {
  ParseOptions options = named("sglang.json");
  options.fallback_ep_size = 2;
  auto sglang = parse_placement(R"({"physical_to_logical_map": [[0, 1, 2, 3]]})", options);
  CHECK(sglang.ep_size == 2);
  CHECK(sglang.num_slots_per_rank == 2);
  auto bare = parse_placement("[[0, 1, 2, 3, 0, 1]]", options);
  CHECK(bare.ep_size == 2);
  CHECK(bare.num_slots_per_rank == 3);
  // --ep-size wins over the fallback.
  options.ep_size = 4;
  CHECK(parse_placement("[[0, 1, 2, 3]]", options).ep_size == 4);
  // A canonical file keeps its own ep_size.
  options.ep_size.reset();
  auto canonical = parse_placement(
      R"({"format": "eplb-placement", "version": 1, "ep_size": 1, "physical_to_logical_map": [[0, 1]]})",
      options);
  CHECK(canonical.ep_size == 1);
}

}  // namespace
}  // namespace eplb::placement
