// Every engine form: read (configs/placements/), written, read back; detection and the
// exact text of every form's errors.
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/placement/forms.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::placement {
namespace {

using Problems = std::vector<std::string>;

const std::string kExamples = std::string(EPLB_SOURCE_DIR) + "/configs/placements/";

ParseOptions named(const std::string& name, std::optional<int32_t> ep_size = std::nullopt) {
  ParseOptions options;
  options.source_name = name;
  options.ep_size = ep_size;
  return options;
}

Problems parse_problems(const std::string& text, const ParseOptions& options = named("p")) {
  try {
    parse_placement(text, options);
  } catch (const core::Error& error) {
    CHECK(error.kind() == core::ErrorKind::kInput);
    return error.problems();
  }
  FAIL("parse_placement accepted: " << text);
  return {};
}

// The placement every file in configs/placements/ holds.
Placement example() {
  Placement p;
  p.ep_size = 2;
  p.num_slots_per_rank = 3;
  p.num_logical_experts = 4;
  p.physical_to_logical_map = {{0, 1, 2, 3, 0, 1}, {3, 2, 1, 0, 3, 2}};
  return p;
}

TEST_CASE("every example form reads as the same placement", "[placement][forms]") {
  for (const char* file : {"canonical.json", "vllm-ascend.json"}) {
    INFO(file);
    CHECK(load_placement(kExamples + file, {}) == example());
  }
  for (const char* file : {"sglang.json", "bare.json", "vllm-state.json", "vllm-mapping.jsonl"}) {
    INFO(file);
    CHECK(load_placement(kExamples + file, named(kExamples + file, 2)) == example());
  }
  Placement trtllm = example();
  trtllm.model_layer_ids = {3, 4};
  CHECK(load_placement(kExamples + "trtllm.yaml", named("trtllm.yaml", 2)) == trtllm);
  // Layer numbers are what the manifest does not hold: same slots, different numbering.
  CHECK(same_slots(trtllm, example()));
  CHECK_FALSE(trtllm == example());
}

// Random placements, some with model layer numbers (and a hidden layer count), some with an
// unused highest expert, some with empty slots.
std::vector<Placement> random_placements() {
  std::mt19937 rng(2024);
  std::vector<Placement> out;
  for (int trial = 0; trial < 100; ++trial) {
    Placement p;
    p.ep_size = 1 + static_cast<int32_t>(rng() % 6);
    p.num_slots_per_rank = 1 + static_cast<int32_t>(rng() % 5);
    p.num_logical_experts = 1 + static_cast<int32_t>(rng() % 30);
    const int32_t num_layers = 1 + static_cast<int32_t>(rng() % 5);
    for (int32_t layer = 0; layer < num_layers; ++layer) {
      std::vector<int32_t> row;
      for (int32_t slot = 0; slot < p.num_slots(); ++slot) {
        row.push_back(
            static_cast<int32_t>(rng() % static_cast<uint32_t>(p.num_logical_experts + 1)) - 1);
      }
      p.physical_to_logical_map.push_back(row);
    }
    if (trial % 3 != 1) {
      int32_t next = static_cast<int32_t>(rng() % 5);
      for (int32_t layer = 0; layer < num_layers; ++layer) {
        p.model_layer_ids.push_back(next);
        next += 1 + static_cast<int32_t>(rng() % 3);
      }
      p.num_hidden_layers = next + static_cast<int32_t>(rng() % 3);
    }
    out.push_back(p);
  }
  return out;
}

bool all_empty(const Placement& p) {
  for (const auto& row : p.physical_to_logical_map) {
    for (int32_t id : row) {
      if (id != -1) return false;
    }
  }
  return true;
}

TEST_CASE("every written form reads back as the same placement", "[placement][forms][round]") {
  for (const std::string& name : form_names()) {
    const WriteForm form = *form_from_name(name);
    INFO(name);
    for (const Placement& original : random_placements()) {
      if (all_empty(original)) continue;  // such a file must state the count: only some can
      const bool numbered = !original.model_layer_ids.empty();
      if (!numbered && (form == WriteForm::kSglang || form == WriteForm::kTrtllm)) continue;
      const std::string text =
          write_placement(original, form, {FillEmpty::kLeastReplicated}, "random");
      INFO(text);
      // What the form does not carry is given back as run and plan give it.
      ParseOptions options = named("round-trip");
      options.ep_size = original.ep_size;
      options.num_logical_experts = original.num_logical_experts;
      if (numbered) {
        options.model_layers =
            ModelLayers{original.model_layer_ids, original.num_hidden_layers, "the test"};
      }
      const Placement expected = can_express_empty(form) ? original : fill_empty_slots(original);
      CHECK(parse_placement(text, options) == expected);
      // The forms that record the count need no help with it (vLLM's JSONL says it as
      // slots - redundant ones, so only when there are at least as many slots as experts).
      if (form == WriteForm::kCanonical || form == WriteForm::kVllmState ||
          (form == WriteForm::kVllmJsonl && original.num_slots() >= original.num_logical_experts)) {
        options.num_logical_experts.reset();
        CHECK(parse_placement(text, options) == expected);
      }
    }
  }
}

TEST_CASE("converting between any two forms keeps the placement", "[placement][forms][round]") {
  Placement p = example();
  p.model_layer_ids = {3, 4};
  p.num_hidden_layers = 5;
  ParseOptions options = named("x", 2);
  options.model_layers = ModelLayers{{3, 4}, 5, "the test"};
  for (const std::string& a : form_names()) {
    for (const std::string& b : form_names()) {
      INFO(a << " -> " << b);
      const Placement via_a = parse_placement(write_placement(p, *form_from_name(a)), options);
      const Placement via_b = parse_placement(write_placement(via_a, *form_from_name(b)), options);
      CHECK(via_b == p);
    }
  }
}

TEST_CASE("what a form cannot carry is said", "[placement][forms]") {
  Placement p = example();
  p.model_layer_ids = {3, 4};
  p.num_logical_experts = 6;
  CHECK(lost_in(p, WriteForm::kCanonical).empty());
  CHECK(lost_in(p, WriteForm::kSglang) ==
        Problems{"the sglang form does not record ep_size 2: give --ep-size 2 when reading it",
                 "the sglang form does not say which rows are the model's MoE layers: give "
                 "--model-layers 3-4 when reading it",
                 "the sglang form does not record num_logical_experts 6: read back, it is derived "
                 "as 4 unless the old placement gives it"});
  CHECK(lost_in(p, WriteForm::kVllmAscend) ==
        Problems{"the vllm-ascend form counts the model's MoE layers: give --model-layers 3-4 "
                 "when reading it",
                 "the vllm-ascend form does not record num_logical_experts 6: read back, it is "
                 "derived as 4 unless the old placement gives it"});
  p.model_layer_ids.clear();
  CHECK(lost_in(p, WriteForm::kTrtllm).size() == 2);  // ep_size and the expert count only
}

TEST_CASE("writers produce the engines' layouts", "[placement][forms]") {
  Placement p = example();
  p.model_layer_ids = {3, 4};
  CHECK(write_placement(p, WriteForm::kTrtllm) ==
        "num_slots: 6\n"
        "initial_global_assignments:\n"
        "  3: [0, 1, 2, 3, 0, 1]\n"
        "  4: [3, 2, 1, 0, 3, 2]\n"
        "layer_updates_per_iter: 0\n");
  // vLLM and vllm-ascend count MoE layers.
  CHECK(write_placement(p, WriteForm::kVllmJsonl) ==
        R"({"record_type":"eplb_initial_mapping","version":1,"num_redundant_experts":2,)"
        R"("num_slots":6,"initial_global_assignments":{"0":[0,1,2,3,0,1],"1":[3,2,1,0,3,2]}})"
        "\n");
  CHECK(write_placement(p, WriteForm::kVllmAscend)
            .starts_with("{\n  \"moe_layer_count\": 2,\n  \"layer_list\": [\n    {\n"
                         "      \"layer_id\": 0,\n      \"device_count\": 2,\n"
                         "      \"device_list\": [\n        {\n          \"device_id\": 0,\n"
                         "          \"device_expert\": [0,1,2]\n        },"));
  // SGLang: a row per hidden layer; dense layers 0-2 as SGLang's trivial placement (p % 4).
  p.physical_to_logical_map[0] = {1, 1, 2, 3, 0, 2};
  CHECK(write_placement(p, WriteForm::kSglang) ==
        "{\n  \"physical_to_logical_map\": [\n    [0,1,2,3,0,1],\n    [0,1,2,3,0,1],\n"
        "    [0,1,2,3,0,1],\n    [1,1,2,3,0,2],\n    [3,2,1,0,3,2]\n  ]\n}\n");
  p.num_hidden_layers = 6;  // a dense layer after the last MoE layer
  CHECK(write_placement(p, WriteForm::kSglang)
            .ends_with("[3,2,1,0,3,2],\n    [0,1,2,3,0,1]\n  ]\n}\n"));
}

TEST_CASE("inline JSON arguments are told from paths", "[placement][forms]") {
  CHECK(is_inline_json(R"({"physical_to_logical_map": [[0, 1]]})"));
  CHECK(is_inline_json("  [[0, 1]]"));
  CHECK_FALSE(is_inline_json("new.json"));
  CHECK_FALSE(is_inline_json("./{odd}.json"));
  CHECK(argument_name("[[0,1]]", "--new") == "--new (inline JSON)");
  CHECK(argument_name("dir/new.json", "--new") == "dir/new.json");
  const Placement p = load_placement_argument(R"({"physical_to_logical_map": [[0, 1, 2, 3]]})",
                                              "--new", named("ignored", 2));
  CHECK(p.physical_to_logical_map == std::vector<std::vector<int32_t>>{{0, 1, 2, 3}});
  try {
    load_placement_argument("[[0, 1, 2]]", "--new", named("ignored", 2));
    FAIL("accepted 3 slots on 2 ranks");
  } catch (const core::Error& error) {
    CHECK(error.problems() ==
          Problems{"'--new (inline JSON)': 3 slots per layer is not divisible by ep_size 2"});
  }
}

const std::string kAccepted =
    "accepted forms: canonical {\"format\": \"eplb-placement\", ...}, SGLang "
    "{\"physical_to_logical_map\"}, a bare 2-D array, vLLM EPLB state {\"num_moe_layers\", "
    "\"num_logical_experts\", \"num_physical_experts\", \"physical_to_logical_map\"}, vLLM JSONL "
    "{\"record_type\": \"eplb_initial_mapping\", ...} per line, vllm-ascend {\"moe_layer_count\", "
    "\"layer_list\"}, TensorRT-LLM YAML {num_slots, initial_global_assignments} (see "
    "docs/PLACEMENT.md)";

TEST_CASE("an unrecognised document lists the forms and the keys it has", "[placement][forms]") {
  CHECK(parse_problems(R"({"logical_count": [[1, 2]], "step": 3})") ==
        Problems{"'p': not a placement in any accepted form (top-level keys: \"logical_count\", "
                 "\"step\"); " +
                 kAccepted});
  CHECK(parse_problems("{}") ==
        Problems{"'p': not a placement in any accepted form (an empty object); " + kAccepted});
  CHECK(parse_problems(R"("hello")") ==
        Problems{"'p': not a placement in any accepted form (found string \"hello\", not an "
                 "object or an array); " +
                 kAccepted});
  // Not JSON-looking: read as YAML.
  CHECK(parse_problems("logical_count:\n  - [1, 2]\n") ==
        Problems{"'p': not a placement in any accepted form (top-level keys: \"logical_count\"); " +
                 kAccepted});
}

TEST_CASE("vLLM EPLB state: stated counts must match the map", "[placement][forms][errors]") {
  CHECK(parse_problems(R"({"num_moe_layers": 3, "num_logical_experts": 4,
      "num_physical_experts": 8, "physical_to_logical_map": [[0,1,2,3,0,1]], "x": 1})",
                       named("s.json", 2)) ==
        Problems{"'s.json' at /x: unknown key \"x\"",
                 "'s.json' at /num_moe_layers: num_moe_layers 3 disagrees with the 1 layers given",
                 "'s.json' at /num_physical_experts: num_physical_experts 8 disagrees with the 6 "
                 "slots of each layer"});
  CHECK(parse_problems(R"({"num_moe_layers": 1, "physical_to_logical_map": [[0,1]]})",
                       named("s.json", 2)) ==
        Problems{"'s.json': missing required key \"num_logical_experts\"",
                 "'s.json': missing required key \"num_physical_experts\""});
  CHECK(parse_problems(R"({"num_moe_layers": 1, "num_logical_experts": 2,
      "num_physical_experts": 2, "physical_to_logical_map": [[0,5]]})",
                       named("s.json", 2)) ==
        Problems{"'s.json' at /physical_to_logical_map/0/1: logical expert id 5 is out of range "
                 "[-1, 2)"});
  CHECK(parse_problems(R"({"num_moe_layers": 1, "num_logical_experts": 2,
      "num_physical_experts": 2, "physical_to_logical_map": [[0,1]]})",
                       named("s.json")) ==
        Problems{"'s.json': the vLLM EPLB state form does not give ep_size: pass --ep-size"});
}

TEST_CASE("vLLM JSONL: one mapping record, located by line", "[placement][forms][errors]") {
  const std::string stats = R"({"record_type": "eplb_load_stats", "step": 1})";
  const std::string mapping =
      R"({"record_type": "eplb_initial_mapping", "version": 1, "num_redundant_experts": 1, )"
      R"("num_slots": 4, "initial_global_assignments": {"0": [0, 1, 2, 0], "1": [2, 1, 0, 2]}})";
  // Load statistics in the same file are skipped.
  const Placement p = parse_placement(stats + "\n\n" + mapping + "\n", named("m.jsonl", 2));
  CHECK(p.num_logical_experts == 3);  // num_slots - num_redundant_experts
  CHECK(p.physical_to_logical_map[1] == std::vector<int32_t>{2, 1, 0, 2});
  CHECK(parse_problems(stats + "\n" + stats + "\n", named("m.jsonl", 2)) ==
        Problems{"'m.jsonl': no record with \"record_type\": \"eplb_initial_mapping\""});
  CHECK(parse_problems(mapping + "\n" + stats + "\n" + mapping, named("m.jsonl", 2)) ==
        Problems{"'m.jsonl': 2 eplb_initial_mapping records (lines 1 3); expected one"});
  CHECK(parse_problems(mapping + "\n{\"a\": }\n", named("m.jsonl", 2)) ==
        Problems{"'m.jsonl:2': malformed JSON at line 1, column 7 (byte 7): syntax error while "
                 "parsing value - unexpected '}'; expected '[', '{', or a literal"});
  CHECK(parse_problems(mapping + "\n[1, 2]\n", named("m.jsonl", 2)) ==
        Problems{"'m.jsonl:2': expected a JSON object (one record per line), got an array"});
  const std::string bad =
      R"({"record_type": "eplb_initial_mapping", "version": 2, "num_slots": 4, )"
      R"("initial_global_assignments": {"0": [0, 1, 2, 0], "x": [2, 1, 0, 2], "1": [0, 9, 0, 0]}})";
  CHECK(parse_problems(stats + "\n" + bad + "\n", named("m.jsonl", 2)) ==
        Problems{"'m.jsonl:2' at /version: unsupported version 2 (this build reads version 1)",
                 "'m.jsonl:2' at /initial_global_assignments/x: layer key \"x\" is not a layer "
                 "number (a non-negative integer)"});
  CHECK(
      parse_problems(stats + "\n" +
                         R"({"record_type": "eplb_initial_mapping", "version": 1, "num_slots": 4, )"
                         R"("num_redundant_experts": 1, "initial_global_assignments": )"
                         R"({"0": [0, 1, 2, 0], "1": [0, 3, 0, 0]}})",
                     named("m.jsonl", 2)) ==
      Problems{"'m.jsonl:2' at /initial_global_assignments/1/1: logical expert id 3 is out of "
               "range [-1, 3)"});
}

TEST_CASE("vllm-ascend: devices and layers are checked where they are",
          "[placement][forms][errors]") {
  CHECK(parse_problems(R"({"moe_layer_count": 1, "layer_list": [{"layer_id": 0,
      "device_count": 3, "device_list": [{"device_id": 0, "device_expert": [0, 1]},
      {"device_id": 2, "device_expert": [2]}]}]})",
                       named("a.json")) ==
        Problems{"'a.json' at /layer_list/0/device_list: 2 devices listed, but device_count is 3",
                 "'a.json' at /layer_list/0/device_list/1/device_id: device_id 2 is not the "
                 "device's position 1",
                 "'a.json' at /layer_list/0/device_list/1/device_expert: device 1 has 1 experts, "
                 "but device 0 has 2 (every device needs the same number of slots)"});
  CHECK(parse_problems(R"({"moe_layer_count": 1, "layer_list": [{"layer_id": 0,
      "device_count": 2, "device_list": [{"device_expert": [0, 1]},
      {"device_expert": [2, "x"]}]}]})",
                       named("a.json")) ==
        Problems{"'a.json' at /layer_list/0/device_list/1/device_expert/1: expected an integer, "
                 "got string \"x\""});
  CHECK(parse_problems(R"({"moe_layer_count": 2, "layer_list": [{"layer_id": 0,
      "device_count": 2, "device_list": [{"device_expert": [0]}, {"device_expert": [1]}]}]})",
                       named("a.json", 4)) ==
        Problems{
            "'a.json' at /layer_list/0/device_count: device_count 2 disagrees with --ep-size 4",
            "'a.json' at /moe_layer_count: moe_layer_count 2 disagrees with the 1 layers given"});
  // layer_id counts MoE layers, as vllm-ascend's writer numbers them.
  const std::string numbered = R"({"moe_layer_count": 2, "layer_list": [
      {"layer_id": 0, "device_count": 1, "device_list": [{"device_expert": [0, 1]}]},
      {"layer_id": 1, "device_count": 1, "device_list": [{"device_expert": [1, 0]}]}]})";
  CHECK(parse_placement(numbered, named("a.json")).model_layer_ids.empty());
  std::string model_numbers = numbered;
  model_numbers.replace(model_numbers.find("\"layer_id\": 1"), 13, "\"layer_id\": 4");
  CHECK(parse_problems(model_numbers, named("a.json")) ==
        Problems{"'a.json' at /layer_list/1/layer_id: layer_id 4 is not the layer's position 1: "
                 "vllm-ascend numbers its MoE layers 0, 1, ... in list order"});
}

TEST_CASE("TensorRT-LLM YAML: keys, counts and YAML problems", "[placement][forms][errors]") {
  CHECK(parse_problems("num_slots: 4\ninitial_global_assignments:\n  3: [0, 1, 2, 3]\n"
                       "  x: [0, 1, 2, 3]\n  5: [0, 1, 2]\n",
                       named("t.yaml", 2)) ==
        Problems{
            "'t.yaml' at /initial_global_assignments/x: layer key \"x\" is not a layer number "
            "(a non-negative integer)",
            "'t.yaml' at /initial_global_assignments/5: layer 1 has 3 slots, but layer 0 has 4"});
  CHECK(parse_problems("num_slots: 8\ninitial_global_assignments:\n  3: [0, 1, 2, 3]\n",
                       named("t.yaml", 2)) ==
        Problems{"'t.yaml' at /num_slots: num_slots 8 disagrees with the 4 slots of each layer"});
  CHECK(
      parse_problems("num_slots: 4\nnum_slots: 4\ninitial_global_assignments: {3: [0, 1, 2, 3]}\n",
                     named("t.yaml", 2)) == Problems{"'t.yaml': duplicate key \"num_slots\""});
  CHECK(parse_problems("num_slots: 4\ninitial_global_assignments: {3: [0, 1, 2, \"3\"]}\n",
                       named("t.yaml", 2)) ==
        Problems{"'t.yaml' at /initial_global_assignments/3/3: expected an integer, got string "
                 "\"3\""});
  CHECK(
      parse_problems("num_slots: 4\ninitial_global_assignments: {3: [0, 1\n", named("t.yaml", 2)) ==
      Problems{"'t.yaml': malformed YAML at line 3, column 1: end of sequence flow not found"});
  CHECK(parse_problems("num_slots: 4\ninitial_global_assignments: {3: [0, 1, 2, 3]}\n",
                       named("t.yaml")) ==
        Problems{"'t.yaml': the TensorRT-LLM form does not give ep_size: pass --ep-size"});
}

TEST_CASE("TensorRT-LLM YAML: aliases are read, but never expanded without bound",
          "[placement][forms][errors]") {
  // A plain alias is just a repeated layer.
  const Placement p =
      parse_placement("num_slots: 4\ninitial_global_assignments: {3: &l [0, 1, 2, 3], 4: *l}\n",
                      named("t.yaml", 2));
  CHECK(p.physical_to_logical_map == std::vector<std::vector<int32_t>>{{0, 1, 2, 3}, {0, 1, 2, 3}});
  // "Billion laughs" (found by fuzz_placement): nine levels of ten aliases each would expand
  // to 10^9 values; refused at once instead of running out of time and memory.
  std::string laughs = "a0: &a0 [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]\n";
  for (int level = 1; level <= 8; ++level) {
    const std::string prev = "*a" + std::to_string(level - 1);
    laughs += "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [" + prev;
    for (int i = 1; i < 10; ++i) laughs += ", " + prev;
    laughs += "]\n";
  }
  laughs += "num_slots: 2\ninitial_global_assignments:\n  0: *a8\n";
  CHECK(parse_problems(laughs, named("t.yaml", 2)) ==
        Problems{"'t.yaml': YAML aliases (*name) expand beyond what a file of this size holds "
                 "written out: write the placement without aliases"});
}

TEST_CASE("TensorRT-LLM YAML: strings that are not UTF-8 are bad input",
          "[placement][forms][errors]") {
  // Found by fuzz_placement: such a string reached nlohmann's serializer (which writes the
  // messages) and ended the process with nlohmann::type_error instead of exit 2.
  CHECK(parse_problems("num_slots: 4\ninitial_global_assignments: {3: [0, 1, 2, \"\xc1\"]}\n",
                       named("t.yaml", 2))
            .front() ==
        "'t.yaml' at /initial_global_assignments/3/3: a string that is not valid "
        "UTF-8");
  CHECK(parse_problems("num_slots: 4\ninitial_global_assignments: {\"\xed\xa0\x80\": [0]}\n",
                       named("t.yaml", 2))
            .front() == "'t.yaml' at /initial_global_assignments: a key that is not valid UTF-8");
  CHECK(parse_problems("\xff: 1\n", named("t.yaml", 2)).front() ==
        "'t.yaml': a key that is not valid UTF-8");
  // Valid UTF-8 beyond ASCII is only an unknown key.
  CHECK(parse_problems("num_slots: 4\ninitial_global_assignments: {3: [0, 1, 2, 3]}\n"
                       "\xc3\xa9: 1\n",
                       named("t.yaml", 2)) ==
        Problems{"'t.yaml' at /\xc3\xa9: unknown key \"\xc3\xa9\""});
}

TEST_CASE("canonical model_layer_ids are checked and kept", "[placement][forms][errors]") {
  const std::string head = R"({"format": "eplb-placement", "version": 1, "ep_size": 1, )";
  CHECK(
      parse_placement(head + R"("model_layer_ids": [3, 5], "physical_to_logical_map": [[0], [0]]})",
                      named("c"))
          .model_layer_ids == std::vector<int32_t>{3, 5});
  // The identity is kept too: the numbering is known (all layers are MoE layers).
  CHECK(
      parse_placement(head + R"("model_layer_ids": [0, 1], "physical_to_logical_map": [[0], [0]]})",
                      named("c"))
          .model_layer_ids == std::vector<int32_t>{0, 1});
  CHECK(parse_problems(head + R"("model_layer_ids": [3, 3, -1], "physical_to_logical_map": [[0]]})",
                       named("c")) ==
        Problems{"'c' at /model_layer_ids/1: model layer id 3 appears twice",
                 "'c' at /model_layer_ids/2: model layer id -1 is out of range [0, 2147483647]"});
  CHECK(parse_problems(head + R"("model_layer_ids": [3, 4], "physical_to_logical_map": [[0]]})",
                       named("c")) ==
        Problems{"'c' at /model_layer_ids: 2 model layer ids for 1 layers"});
}

}  // namespace
}  // namespace eplb::placement
