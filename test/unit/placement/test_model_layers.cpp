// The model's layer numbering in every form (SGLang's row per hidden layer, TensorRT-LLM's
// model layer keys, vLLM counting MoE layers), empty slots the engines cannot express, and
// the keys the engines' own writers add. Exact texts: docs/PLACEMENT.md.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/placement/elastic.hpp"
#include "eplb/placement/forms.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::placement {
namespace {

using Problems = std::vector<std::string>;

ParseOptions with(std::optional<ModelLayers> model, std::optional<int32_t> ep_size = 2) {
  ParseOptions options;
  options.source_name = "p";
  options.ep_size = ep_size;
  options.model_layers = std::move(model);
  return options;
}

template <typename Fn>
std::pair<core::ErrorKind, Problems> refusal(Fn&& fn) {
  try {
    fn();
  } catch (const core::Error& error) {
    return {error.kind(), error.problems()};
  }
  FAIL("accepted");
  return {};
}

Problems parse_problems(const std::string& text, const ParseOptions& options) {
  auto [kind, problems] = refusal([&] { parse_placement(text, options); });
  CHECK(kind == core::ErrorKind::kInput);
  return problems;
}

const ModelLayers kDeepseekLike{{3, 4}, 5, "--model-layers 3-4"};

TEST_CASE("--model-layers specs", "[placement][layers]") {
  CHECK(parse_model_layers_spec("3-60").moe_layers.size() == 58);
  CHECK(parse_model_layers_spec("3-60").source == "--model-layers 3-60");
  CHECK(parse_model_layers_spec("1,3, 5-7").moe_layers == std::vector<int32_t>{1, 3, 5, 6, 7});
  CHECK(parse_model_layers_spec("0").moe_layers == std::vector<int32_t>{0});
  CHECK(parse_model_layers_spec("3-4").hidden_layers() == 5);
  const auto usage = [](const char* spec) {
    auto [kind, problems] = refusal([&] { parse_model_layers_spec(spec); });
    CHECK(kind == core::ErrorKind::kUsage);
    return problems.at(0);
  };
  CHECK(usage("5-3") ==
        "--model-layers '5-3': the range '5-3' runs backwards (expected the model's MoE layer "
        "numbers, e.g. 3-60 or 1,3,5-7)");
  CHECK(
      usage("3,3").starts_with("--model-layers '3,3': '3' does not come after layer 3: list "
                               "layers ascending, each once"));
  CHECK(usage("a-4").starts_with(
      "--model-layers 'a-4': 'a-4' is not a layer number or a range A-B of them (numbers from "
      "0 to 1048575)"));
  CHECK(usage("1,").starts_with("--model-layers '1,': an empty item"));
  CHECK(format_layer_numbers({3, 4, 5, 6, 9, 11, 12}) == "3-6, 9, 11, 12");
  CHECK(format_layer_numbers({}).empty());
  CHECK(format_layer_spec({3, 4, 5, 6, 9, 11, 12}) == "3-6,9,11-12");
  CHECK(parse_model_layers_spec(format_layer_spec({0, 2, 3, 7})).moe_layers ==
        std::vector<int32_t>{0, 2, 3, 7});
}

TEST_CASE("SGLang's row per hidden layer keeps the MoE rows when the model is known",
          "[placement][layers]") {
  // A model with three dense layers: SGLang's map has 5 rows, the MoE ones are 3 and 4.
  const std::string sglang =
      R"({"physical_to_logical_map": [[0,1,2,3], [0,1,2,3], [0,1,2,3], [3,2,1,0], [1,0,3,2]]})";
  const Placement p = parse_placement(sglang, with(kDeepseekLike));
  CHECK(p.physical_to_logical_map == std::vector<std::vector<int32_t>>{{3, 2, 1, 0}, {1, 0, 3, 2}});
  CHECK(p.model_layer_ids == std::vector<int32_t>{3, 4});
  CHECK(p.num_hidden_layers == 5);
  // Without the model's layers the rows are taken as they are (the pair check says more).
  CHECK(parse_placement(sglang, with(std::nullopt)).num_layers() == 5);
  // MoE rows only (ours before, or a model without dense layers) are read as MoE rows.
  CHECK(parse_placement(R"([[3,2,1,0], [1,0,3,2]])", with(kDeepseekLike)).model_layer_ids ==
        std::vector<int32_t>{3, 4});
  // Neither count: refused, naming both.
  CHECK(parse_problems(R"([[0,1,2,3], [0,1,2,3], [0,1,2,3]])", with(kDeepseekLike)) ==
        Problems{"'p': 3 layers, but the model has 2 MoE layers (3, 4) and 5 hidden layers (one "
                 "row each in SGLang's form; --model-layers 3-4)"});
  // The hidden layer count, when known, is exact.
  CHECK(parse_problems(sglang + "", with(ModelLayers{{3, 4}, 6, "--hf 'm'"})) ==
        Problems{"'p' at /physical_to_logical_map: 5 layers, but the model has 2 MoE layers "
                 "(3, 4) and 6 hidden layers (one row each in SGLang's form; --hf 'm')"});
}

TEST_CASE("forms numbered by model layer must agree with the model", "[placement][layers]") {
  const std::string trtllm =
      "num_slots: 4\ninitial_global_assignments:\n  0: [0, 1, 2, 3]\n"
      "  1: [3, 2, 1, 0]\n";
  CHECK(parse_problems(trtllm, with(kDeepseekLike)) ==
        Problems{"'p' at /initial_global_assignments: model layers 0, 1 disagree with the "
                 "model's MoE layers 3, 4 (--model-layers 3-4)"});
  const std::string canonical = R"({"format": "eplb-placement", "version": 1, "ep_size": 2,
      "model_layer_ids": [3, 4], "num_hidden_layers": 7, "physical_to_logical_map": [[0,1], [1,0]]})";
  CHECK(parse_problems(canonical, with(kDeepseekLike)) ==
        Problems{"'p' at /num_hidden_layers: num_hidden_layers 7 disagrees with the model's 5 "
                 "(--model-layers 3-4)"});
  CHECK(parse_placement(canonical, with(std::nullopt)).num_hidden_layers == 7);
  CHECK(parse_problems(R"({"format": "eplb-placement", "version": 1, "ep_size": 2,
      "model_layer_ids": [3, 4], "num_hidden_layers": 4, "physical_to_logical_map": [[0,1], [1,0]]})",
                       with(std::nullopt)) ==
        Problems{"'p' at /num_hidden_layers: num_hidden_layers 4 leaves out model layer 4 of "
                 "model_layer_ids"});
  // vLLM counts MoE layers: keys 0, 1, ..., then the model's numbering is the caller's.
  const std::string jsonl =
      R"({"record_type": "eplb_initial_mapping", "version": 1, "num_slots": 2, )"
      R"("initial_global_assignments": {"0": [0, 1], "1": [1, 0]}})";
  CHECK(parse_placement(jsonl, with(kDeepseekLike)).model_layer_ids == std::vector<int32_t>{3, 4});
  CHECK(parse_problems(R"({"record_type": "eplb_initial_mapping", "version": 1, "num_slots": 2, )"
                       R"("initial_global_assignments": {"3": [0, 1], "4": [1, 0]}})",
                       with(std::nullopt)) ==
        Problems{"'p' at /initial_global_assignments/3: layer key \"3\" is not MoE layer 0: vLLM "
                 "numbers its MoE layers 0, 1, ... (2 layers: keys 0 to 1)"});
  // With the hidden layer count unknown, a row per hidden layer may end in dense layers.
  CHECK(parse_placement(R"([[0, 1], [1, 0], [0, 1]])", with(ModelLayers{{0, 1}, 0, "x"}))
            .num_hidden_layers == 3);
}

TEST_CASE("the old placement's numbering reads the new one", "[placement][layers]") {
  PairOptions options;
  options.old_ep_size = options.new_ep_size = 2;
  options.old_arg = R"({"format": "eplb-placement", "version": 1, "ep_size": 2,
      "model_layer_ids": [3, 4], "num_hidden_layers": 5, "physical_to_logical_map": [[0,1], [1,0]]})";
  options.new_arg = R"({"physical_to_logical_map": [[0,1], [0,1], [0,1], [1,0], [0,1]]})";
  const PlacementPair pair = load_pair(options);
  CHECK(pair.new_placement.physical_to_logical_map ==
        std::vector<std::vector<int32_t>>{{1, 0}, {0, 1}});
  // Without a numbering anywhere, the count mismatch says how to give one.
  options.old_arg = R"([[0,1], [1,0]])";
  auto [kind, problems] = refusal([&] { load_pair(options); });
  CHECK(problems == Problems{"'--new (inline JSON)' has 5 layers, but '--old (inline JSON)' has 2 "
                             "(if one has a row per hidden layer, as SGLang's map does, give the "
                             "model's layers with --model-layers (e.g. 3-60), --hf DIR or "
                             "--checkpoint DIR)"});
  options.model_layers = ModelLayers{{3, 4}, 0, "--model-layers 3-4"};
  CHECK(load_pair(options).new_placement.num_layers() == 2);
}

Placement two_layers() {
  Placement p;
  p.ep_size = 2;
  p.num_slots_per_rank = 2;
  p.num_logical_experts = 3;
  p.physical_to_logical_map = {{0, 1, 2, -1}, {2, -1, 0, -1}};
  return p;
}

TEST_CASE("forms that need the model's layers refuse a placement without them",
          "[placement][layers]") {
  Placement p = two_layers();
  for (WriteForm form : {WriteForm::kSglang, WriteForm::kTrtllm}) {
    auto [kind, problems] =
        refusal([&] { write_placement(p, form, {FillEmpty::kLeastReplicated}, "old.json"); });
    CHECK(kind == core::ErrorKind::kInput);
    CHECK(problems.at(0) ==
          (form == WriteForm::kSglang
               ? "'old.json' does not record the model's layer numbers, and the sglang form has a "
                 "row per hidden layer, dense layers included: give the model's layers with "
                 "--model-layers (e.g. 3-60), --hf DIR or --checkpoint DIR"
               : "'old.json' does not record the model's layer numbers, and the trtllm form keys "
                 "layers by the model's layer number: give the model's layers with "
                 "--model-layers (e.g. 3-60), --hf DIR or --checkpoint DIR"));
  }
  // vLLM's forms count MoE layers: nothing is needed.
  CHECK_NOTHROW(write_placement(p, WriteForm::kVllmState));
}

TEST_CASE("empty slots never silently change meaning", "[placement][empty]") {
  Placement p = two_layers();
  p.model_layer_ids = {3, 5};
  CHECK(can_express_empty(WriteForm::kCanonical));
  CHECK(can_express_empty(WriteForm::kVllmState));
  for (WriteForm form :
       {WriteForm::kSglang, WriteForm::kTrtllm, WriteForm::kVllmJsonl, WriteForm::kVllmAscend}) {
    INFO(form_name(form));
    CHECK_FALSE(can_express_empty(form));
    auto [kind, problems] = refusal([&] { write_placement(p, form, {}, "m.json"); });
    CHECK(kind == core::ErrorKind::kInput);
    CHECK(problems.size() == 3);
  }
  auto [kind, problems] = refusal([&] { write_placement(p, WriteForm::kSglang, {}, "m.json"); });
  CHECK(problems.at(0) ==
        "'m.json' layer 0 (model layer 3), slot 3 (EP rank 1, row 1) is empty (-1), which the "
        "sglang form cannot express (SGLang would take -1 for its last expert): pass "
        "--fill-empty least-replicated to give it a replica");
  CHECK(problems.at(2) ==
        "'m.json' layer 1 (model layer 5), slot 3 (EP rank 1, row 1) is empty (-1), which the "
        "sglang form cannot express (SGLang would take -1 for its last expert): pass "
        "--fill-empty least-replicated to give it a replica");
  // The rule: the expert with the fewest slots in the layer so far, lowest id among equals.
  CHECK(fill_empty_slots(p).physical_to_logical_map ==
        std::vector<std::vector<int32_t>>{{0, 1, 2, 0}, {2, 1, 0, 0}});
  CHECK(write_placement(p, WriteForm::kTrtllm, {FillEmpty::kLeastReplicated}) ==
        "num_slots: 4\ninitial_global_assignments:\n  3: [0, 1, 2, 0]\n  5: [2, 1, 0, 0]\n"
        "layer_updates_per_iter: 0\n");
  CHECK(fill_empty_from_name("least-replicated") == FillEmpty::kLeastReplicated);
  CHECK_FALSE(fill_empty_from_name("zero"));
  // More than 20 empty slots: the rest are counted.
  Placement wide = two_layers();
  wide.model_layer_ids = {0, 1};
  wide.num_slots_per_rank = 12;
  wide.physical_to_logical_map = {std::vector<int32_t>(24, -1), std::vector<int32_t>(24, 0)};
  auto [k2, many] = refusal([&] { write_placement(wide, WriteForm::kVllmAscend, {}, "w"); });
  CHECK(many.size() == 21);
  CHECK(many.back() == "'w': ... and 4 more empty slots");
}

TEST_CASE("TensorRT-LLM: ep_size and the LLM API options file", "[placement][tolerant]") {
  const std::string balancer =
      "num_slots: 4\nep_size: 2\ninitial_global_assignments:\n"
      "  3: [0, 1, 2, 3]\n  4: [3, 2, 1, 0]\n";
  const Placement p = parse_placement(balancer, with(std::nullopt, std::nullopt));
  CHECK(p.ep_size == 2);
  CHECK(p.model_layer_ids == std::vector<int32_t>{3, 4});
  // One message, never "unknown key" and "pass --ep-size" together.
  CHECK(parse_problems(balancer, with(std::nullopt, 4)) ==
        Problems{"'p' at /ep_size: ep_size 2 disagrees with --ep-size 4"});
  CHECK(parse_problems("num_slots: 4\nep_size: 3\ninitial_global_assignments: {3: [0, 1, 2, 3]}\n",
                       with(std::nullopt, std::nullopt)) ==
        Problems{"'p' at /initial_global_assignments: 4 slots per layer is not divisible by "
                 "ep_size 3"});
  // The balancer nested in the LLM API options (extra_llm_api_options.yaml); the options
  // around it are TensorRT-LLM's own.
  const std::string options =
      "enable_attention_dp: true\nmoe_config:\n  backend: WideEP\n"
      "  load_balancer:\n    num_slots: 4\n    ep_size: 2\n"
      "    initial_global_assignments: {3: [0, 1, 2, 3], 4: [3, 2, 1, 0]}\n";
  CHECK(parse_placement(options, with(std::nullopt, std::nullopt)) == p);
  CHECK(parse_problems("moe_config:\n  load_balancer:\n    num_slots: 4\n    ep_size: 2\n"
                       "    initial_global_assignments: {3: [0, 1, 2, -2]}\n    slots: 1\n",
                       with(std::nullopt, std::nullopt)) ==
        Problems{"'p' at /moe_config/load_balancer/slots: unknown key \"slots\"",
                 "'p' at /moe_config/load_balancer/initial_global_assignments/3/3: logical "
                 "expert id -2 is out of range [-1, 3)"});
  CHECK(parse_problems("moe_config:\n  load_balancer: ./moe_load_balancer.yaml\n",
                       with(std::nullopt)) ==
        Problems{"'p' at /moe_config/load_balancer: names the file \"./moe_load_balancer.yaml\": "
                 "give that file (the moe_load_balancer.yaml it names) instead"});
  CHECK(parse_problems("moe_config:\n  backend: WideEP\n", with(std::nullopt)) ==
        Problems{"'p' at /moe_config: TensorRT-LLM's options give no load_balancer here "
                 "(moe_config has no \"load_balancer\")"});
  // A key "ep_size" where the form has none: only the unknown key is said.
  CHECK(parse_problems(R"({"num_moe_layers": 1, "num_logical_experts": 2,
      "num_physical_experts": 2, "physical_to_logical_map": [[0,1]], "ep_size": 2})",
                       with(std::nullopt, std::nullopt)) ==
        Problems{"'p' at /ep_size: unknown key \"ep_size\""});
}

TEST_CASE("vLLM state: the replica maps vLLM keeps are checked against the map",
          "[placement][tolerant]") {
  const std::string head = R"({"num_moe_layers": 1, "num_logical_experts": 3,
      "num_physical_experts": 4, "physical_to_logical_map": [[0, 1, 0, 2]], )";
  const Placement p = parse_placement(head + R"("logical_replica_count": [[2, 1, 1]],
      "logical_to_physical_map": [[[0, 2], [1, -1], [3, -1]]]})",
                                      with(std::nullopt));
  CHECK(p.physical_to_logical_map == std::vector<std::vector<int32_t>>{{0, 1, 0, 2}});
  CHECK(parse_problems(head + R"("logical_replica_count": [[1, 1, 1]],
      "logical_to_physical_map": [[[0, 3], [1, -1], [-1, 3]]]})",
                       with(std::nullopt)) ==
        Problems{"'p' at /logical_replica_count/0/0: logical expert 0 has 2 replicas in "
                 "physical_to_logical_map, not 1",
                 "'p' at /logical_to_physical_map/0/0: lists slots [0, 3], but "
                 "physical_to_logical_map puts the expert in slots [0, 2]",
                 "'p' at /logical_to_physical_map/0/2: expected the expert's slots then -1 "
                 "padding, got [-1,3]"});
  CHECK(parse_problems(head + R"("logical_replica_count": [[2, 1]]})", with(std::nullopt)) ==
        Problems{"'p' at /logical_replica_count/0: expected one entry per logical expert (3), "
                 "got 2 entries"});
}

}  // namespace
}  // namespace eplb::placement
