// load_placement, to_json (round trip) and check_compatible.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::placement {
namespace {

namespace fs = std::filesystem;
using Problems = std::vector<std::string>;

Placement make(int32_t ep_size, int32_t num_logical_experts,
               std::vector<std::vector<int32_t>> layers) {
  Placement p;
  p.ep_size = ep_size;
  p.num_slots_per_rank = static_cast<int32_t>(layers.at(0).size()) / ep_size;
  p.num_logical_experts = num_logical_experts;
  p.physical_to_logical_map = std::move(layers);
  return p;
}

// A fresh directory for one test, removed at the end.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("eplb-placement-test-" + std::to_string(::getpid()) +
                                               "-" + std::to_string(std::random_device{}()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

TEST_CASE("to_json writes the canonical form, one line per layer", "[placement][json]") {
  const Placement p = make(2, 4, {{0, 1, 2, 3}, {3, -1, 1, 1}});
  CHECK(to_json(p) ==
        "{\n"
        "  \"format\": \"eplb-placement\",\n"
        "  \"version\": 1,\n"
        "  \"ep_size\": 2,\n"
        "  \"num_slots_per_rank\": 2,\n"
        "  \"num_logical_experts\": 4,\n"
        "  \"physical_to_logical_map\": [\n"
        "    [0,1, 2,3],\n"
        "    [3,-1, 1,1]\n"
        "  ]\n"
        "}\n");
}

TEST_CASE("to_json round-trips through parse_placement", "[placement][json]") {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t ep_size = 1 + static_cast<int32_t>(rng() % 8);
    const int32_t slots_per_rank = 1 + static_cast<int32_t>(rng() % 5);
    const int32_t num_experts = 1 + static_cast<int32_t>(rng() % 40);
    const int32_t num_layers = 1 + static_cast<int32_t>(rng() % 6);
    std::vector<std::vector<int32_t>> layers(static_cast<size_t>(num_layers));
    for (auto& layer : layers) {
      for (int32_t i = 0; i < ep_size * slots_per_rank; ++i) {
        // An expert count larger than the max id must survive too: it is written explicitly.
        layer.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(num_experts + 1)) - 1);
      }
    }
    const Placement original = make(ep_size, num_experts, layers);
    ParseOptions options;
    options.source_name = "roundtrip";
    const Placement parsed = parse_placement(to_json(original), options);
    REQUIRE(parsed == original);
  }
}

TEST_CASE("load_placement reads a file and names it in messages", "[placement][load]") {
  TempDir dir;
  const fs::path good = dir.path / "old.json";
  std::ofstream(good) << to_json(make(2, 4, {{0, 1, 2, 3}}));
  CHECK(load_placement(good, {}) == make(2, 4, {{0, 1, 2, 3}}));

  const fs::path bad = dir.path / "new.json";
  std::ofstream(bad) << R"({"physical_to_logical_map": [[0, 1]]})";
  try {
    load_placement(bad, {});
    FAIL("accepted an SGLang file without --ep-size");
  } catch (const core::Error& error) {
    CHECK(error.problems() == Problems{"'" + bad.string() +
                                       "': the SGLang form does not give ep_size: pass --ep-size"});
  }
}

TEST_CASE("load_placement reports an unreadable file as an input error", "[placement][load]") {
  TempDir dir;
  const fs::path missing = dir.path / "missing.json";
  try {
    load_placement(missing, {});
    FAIL("read a missing file");
  } catch (const core::Error& error) {
    CHECK(error.kind() == core::ErrorKind::kInput);
    CHECK(error.problems() ==
          Problems{"'" + missing.string() + "': placement file does not exist"});
  }
  try {
    load_placement(dir.path, {});
    FAIL("read a directory");
  } catch (const core::Error& error) {
    CHECK(error.problems() ==
          Problems{"'" + dir.path.string() +
                   "': placement file must be a regular file, but it is a directory"});
  }
}

TEST_CASE("test vectors 1-4 (test/e2e/placements.py) are compatible", "[placement][compatible]") {
  const Placement old_p = make(2, 4, {{0, 1, 2, 3}});
  CHECK(check_compatible(old_p, old_p, "old.json", "new.json").empty());
  CHECK(check_compatible(old_p, make(2, 4, {{2, 1, 0, 3}}), "old.json", "new.json").empty());
  // Vector 3 drops experts 2 and 3: compatible only when dropping is allowed.
  CHECK(
      check_compatible(old_p, make(2, 4, {{0, 0, 1, 1}}), "old.json", "new.json", {true}).empty());
  // Scale-up 2 -> 3 ranks: a different ep_size is elastic EP, not an error.
  CHECK(check_compatible(old_p, make(3, 4, {{0, 1, 2, 3, 1, 2}}), "old.json", "new.json").empty());
  // Scale-down with a different slot count per rank, and empty slots in new.
  CHECK(check_compatible(make(4, 4, {{0, 1, 2, 3, 0, 1, 2, 3}}), make(1, 4, {{3, 2, -1, 1, 0}}),
                         "old.json", "new.json")
            .empty());
}

TEST_CASE("dropping a logical expert is refused unless allowed", "[placement][compatible]") {
  const Placement old_p = make(2, 4, {{0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}});
  const Placement new_p = make(2, 4, {{0, 1, 3, 3}, {0, 1, 2, 3}, {0, 0, 0, -1}});
  CHECK(check_compatible(old_p, new_p, "old.json", "new.json") ==
        Problems{"'new.json' layer 0: logical expert 2 is held by 'old.json' but by no slot of the "
                 "new placement: its weights would be lost (--allow-dropping-experts drops them)",
                 "'new.json' layer 2: logical experts 1, 2, 3 are held by 'old.json' but by no "
                 "slot of the new placement: their weights would be lost "
                 "(--allow-dropping-experts drops them)"});
  CHECK(check_compatible(old_p, new_p, "old.json", "new.json", {true}).empty());
  // An expert old did not hold in that layer is no loss.
  CHECK(check_compatible(make(2, 4, {{0, 0, 1, 1}}), make(2, 4, {{1, 0, 1, 0}}), "old.json",
                         "new.json")
            .empty());
}

TEST_CASE("test vector 5: new uses an expert no old slot holds", "[placement][compatible]") {
  const Placement old_p = make(2, 8, {{0, 1, 2, 3}, {0, 1, 2, 3}});
  const Placement new_p = make(2, 8, {{0, 1, 2, 3}, {7, 1, 5, 7}});
  CHECK(check_compatible(old_p, new_p, "old.json", "new.json", {true}) ==
        Problems{"'new.json' layer 1: logical expert 5 is used in the new placement but held by "
                 "no slot of the old placement ('old.json')",
                 "'new.json' layer 1: logical expert 7 is used in the new placement but held by "
                 "no slot of the old placement ('old.json')"});
}

TEST_CASE("layer and expert counts must match", "[placement][compatible]") {
  const Placement old_p = make(2, 4, {{0, 1, 2, 3}, {0, 1, 2, 3}});
  const Placement new_p = make(2, 5, {{0, 1, 2, 3}});
  CHECK(check_compatible(old_p, new_p, "old.json", "new.json") ==
        Problems{"'new.json' has 1 layers, but 'old.json' has 2 (if one has a row per hidden "
                 "layer, as SGLang's map does, give the model's layers with --model-layers (e.g. "
                 "3-60), --hf DIR or --checkpoint DIR)",
                 "'new.json' has 5 logical experts, but 'old.json' has 4"});
}

TEST_CASE("more than 20 missing experts in a layer are collapsed", "[placement][compatible]") {
  std::vector<int32_t> new_layer;
  for (int32_t id = 29; id >= 0; --id) new_layer.push_back(id);  // 30 slots, ids 29..0
  const Placement old_p = make(1, 30, {std::vector<int32_t>(30, 29), std::vector<int32_t>(30, 0)});
  const Placement new_p = make(1, 30, {new_layer, new_layer});
  const Problems problems = check_compatible(old_p, new_p, "old.json", "new.json");
  REQUIRE(problems.size() == 42);
  CHECK(problems[0] ==
        "'new.json' layer 0: logical expert 0 is used in the new placement but "
        "held by no slot of the old placement ('old.json')");
  CHECK(problems[19] ==
        "'new.json' layer 0: logical expert 19 is used in the new placement but "
        "held by no slot of the old placement ('old.json')");
  CHECK(problems[20] == "'new.json': ... and 9 more in layer 0");
  CHECK(problems[21] ==
        "'new.json' layer 1: logical expert 1 is used in the new placement but "
        "held by no slot of the old placement ('old.json')");
  CHECK(problems[41] == "'new.json': ... and 9 more in layer 1");
}

}  // namespace
}  // namespace eplb::placement
