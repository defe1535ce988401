// The engines' load statistics as they dump them (test/data/loads/README.md names each
// writer): every fixture reads as the same loads of MoE layers 3 and 4; every refusal is
// pinned with its text.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "eplb/balance/load.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"

namespace eplb::balance {
namespace {

using Problems = std::vector<std::string>;
using Rows = std::vector<std::vector<double>>;

const std::string kLoads = std::string(EPLB_SOURCE_DIR) + "/test/data/loads/";
const Rows kTotals = {{90, 132, 40, 61}, {20, 107, 104, 64}};
const placement::ModelLayers kModel{{3, 4}, 5, "--model-layers 3-4"};

LoadOptions options(std::optional<placement::ModelLayers> model = kModel) {
  LoadOptions o;
  o.source_name = "f";
  o.model_layers = std::move(model);
  return o;
}

template <typename Fn>
Problems problems_of(Fn&& fn) {
  try {
    fn();
  } catch (const core::Error& e) {
    CHECK(e.kind() == core::ErrorKind::kInput);
    return e.problems();
  }
  FAIL("accepted");
  return {};
}

TEST_CASE("every engine's fixture reads as the same loads", "[balance][engines]") {
  const ParsedLoads sglang = parse_loads(
      core::read_input_file(kLoads + "sglang/expert_distribution_recorder.json", "t"), options());
  CHECK(sglang.loads.per_layer == kTotals);
  CHECK(sglang.model_layer_ids == std::vector<int32_t>{3, 4});
  CHECK(sglang.num_hidden_layers == 5);
  CHECK(sglang.form == "SGLang logical_count, per logical expert, summed over 2 steps");
  const ParsedLoads vllm =
      parse_loads(core::read_input_file(kLoads + "vllm/eplb-load-stats.jsonl", "t"), options());
  CHECK(vllm.loads.per_layer == kTotals);
  CHECK(vllm.model_layer_ids == std::vector<int32_t>{3, 4});
  CHECK(vllm.form ==
        "vLLM load statistics of 'deepseek-like-test', 2 steps folded through their "
        "physical_to_logical maps");
  // vLLM counts MoE layers: without the model they are read as they are.
  CHECK(parse_loads(core::read_input_file(kLoads + "vllm/eplb-load-stats.jsonl", "t"),
                    options(std::nullopt))
            .model_layer_ids.empty());
}

TEST_CASE("SGLang: dense rows need the model's layers", "[balance][engines]") {
  const std::string dump =
      core::read_input_file(kLoads + "sglang/expert_distribution_recorder.json", "t");
  CHECK(problems_of([&] { parse_loads(dump, options(std::nullopt)); }) ==
        Problems{"'f' at /logical_count: rows 0-2 have no load at all: SGLang's recorder writes a "
                 "row per hidden layer, 0 for dense layers, so which rows are MoE layers cannot "
                 "be told; give the model's layers with --model-layers (e.g. 3-60), --hf DIR or "
                 "--checkpoint DIR"});
  // The old placement's numbering serves as well.
  placement::Placement old_p;
  old_p.ep_size = 2;
  old_p.num_slots_per_rank = 2;
  old_p.num_logical_experts = 4;
  old_p.physical_to_logical_map = {{0, 1, 2, 3}, {0, 1, 2, 3}};
  old_p.model_layer_ids = {3, 4};
  LoadOptions with_old = options(std::nullopt);
  with_old.old_placement = &old_p;
  CHECK(parse_loads(dump, with_old).loads.per_layer == kTotals);
  // A dense row with load is not this model's.
  CHECK(problems_of([&] {
          parse_loads(R"({"logical_count": [[1, 0], [5, 5], [0, 0], [2, 2], [3, 3]]})", options());
        }) == Problems{"'f' at /logical_count/0: row 0 is a dense layer of the model (MoE layers "
                       "3, 4; --model-layers 3-4) but has load: these loads are not this model's",
                       "'f' at /logical_count/1: row 1 is a dense layer of the model (MoE layers "
                       "3, 4; --model-layers 3-4) but has load: these loads are not this model's"});
  CHECK(problems_of([&] {
          parse_loads(R"({"logical_count": [[1, 0], [5, 5], [2, 2]]})", options());
        }) == Problems{"'f' at /logical_count: 3 layers of loads, but the model has 2 MoE layers "
                       "(3, 4) and 5 hidden layers (SGLang's recorder writes a row per hidden "
                       "layer; --model-layers 3-4)"});
  // Every row with load: every row is a MoE layer.
  CHECK(parse_loads(R"({"logical_count": [[1, 0], [5, 5]]})", options(std::nullopt))
            .loads.num_layers() == 2);
}

const std::string kMeta =
    R"({"record_type": "eplb_load_meta", "version": 1, "model": "m", "num_ranks": 2, )"
    R"("num_groups": 1, "num_nodes": 1, "num_layers": 1, "num_redundant_experts": 0})";
const std::string kStats =
    R"({"record_type": "eplb_load_stats", "version": 1, "step": 1, "expert_load": [[4, 1]], )"
    R"("p2l_map": [[1, 0]]})";

Problems vllm_problems(const std::string& text) {
  return problems_of([&] { parse_loads(text, options(std::nullopt)); });
}

TEST_CASE("vLLM load-stats JSONL: records as vLLM's reader takes them", "[balance][engines]") {
  const ParsedLoads one = parse_loads(kMeta + "\n" + kStats + "\n", options(std::nullopt));
  CHECK(one.loads.per_layer == Rows{{1, 4}});
  CHECK(vllm_problems(kStats + "\n" + kMeta + "\n" + kStats) ==
        Problems{"'f:1': an eplb_load_stats record before the eplb_load_meta record"});
  CHECK(vllm_problems(kMeta + "\n" + kMeta + "\n" + kStats) ==
        Problems{"'f:2': a second eplb_load_meta record (the first is on line 1)"});
  CHECK(vllm_problems(kMeta + "\n" + kStats + "\n{\"record_type\": \"garbage\"}") ==
        Problems{"'f:3' at /record_type: unexpected record \"garbage\": vLLM's load statistics "
                 "hold one eplb_load_meta record, then eplb_load_stats records"});
  CHECK(vllm_problems(kMeta + "\n\n") == Problems{"'f': no eplb_load_stats records"});
  CHECK(vllm_problems(
            kMeta + "\n" +
            R"({"record_type": "eplb_load_stats", "version": 2, )"
            R"("step": 1, "expert_load": [[1, 2], [3, 4]], "p2l_map": [[0, 1]], "x": 0})") ==
        Problems{"'f:2' at /x: unknown key \"x\"",
                 "'f:2' at /version: unsupported version 2 (this build reads version 1)",
                 "'f:2' at /expert_load: expected 1 layers (eplb_load_meta's num_layers), got 2"});
  CHECK(
      vllm_problems(kMeta + "\n" +
                    R"({"record_type": "eplb_load_stats", "version": 1, )"
                    R"("step": 1, "expert_load": [[1, -2]], "p2l_map": [[0, -1]]})") ==
      Problems{"'f:2' at /expert_load/0/1: expected a load from 0 to 3.40282e+38, got number -2"});
  CHECK(vllm_problems(kMeta + "\n" +
                      R"({"record_type": "eplb_load_stats", "version": 1, )"
                      R"("step": 1, "expert_load": [[1, 2, 3]], "p2l_map": [[0, 1, 2]]})") ==
        Problems{"'f:2' at /p2l_map: 3 slots do not divide among num_ranks 2"});
  CHECK(vllm_problems(kMeta + "\n" +
                      R"({"record_type": "eplb_load_stats", "version": 1, )"
                      R"("step": 1, "expert_load": [[1, 2]], "p2l_map": [[0, -1]]})") ==
        Problems{"'f:2' at /expert_load/0/1: load 2 on slot 1, which p2l_map leaves empty"});
  CHECK(vllm_problems(kStats + "\n") ==
        Problems{"'f:1': an eplb_load_stats record before the eplb_load_meta record",
                 "'f': no eplb_load_meta record"});
  CHECK(vllm_problems(kMeta + "\n" +
                      R"({"record_type": "eplb_load_stats", "version": 1, )"
                      R"("step": 1, "expert_load": [[0, 0]], "p2l_map": [[-1, -1]]})") ==
        Problems{"'f': every slot is empty"});
  // The old placement gives the number of logical experts; the map may not exceed it.
  placement::Placement old_p;
  old_p.ep_size = 2;
  old_p.num_slots_per_rank = 1;
  old_p.num_logical_experts = 1;
  old_p.physical_to_logical_map = {{0, 0}};
  LoadOptions with_old = options(std::nullopt);
  with_old.old_placement = &old_p;
  CHECK(problems_of([&] { parse_loads(kMeta + "\n" + kStats, with_old); }) ==
        Problems{"'f': p2l_map holds logical expert 1, but the old placement has 1 logical "
                 "experts"});
  // With the model's layers, the count must fit.
  CHECK(problems_of([&] { parse_loads(kMeta + "\n" + kStats, options()); }) ==
        Problems{"'f': 1 layers of loads, but the model has 2 MoE layers (3, 4; --model-layers "
                 "3-4)"});
}

TrtllmStatistic trtllm() {
  TrtllmStatistic s;
  s.dir = "stat";
  s.meta_info = R"({"num_experts": 2, "num_experts_per_token": 1})";
  s.ranks = {{"rank0.safetensors",
              {{"100_3", "I64", {2}, {1, 2}},
               {"101_3", "I64", {2}, {3, 4}},
               {"100_4", "I64", {2}, {0, 1}},
               {"101_4", "I64", {2}, {1, 0}}}},
             {"rank1.safetensors", {{"100_3", "I32", {2}, {10, 20}}}}};
  return s;
}

Problems trtllm_problems(const TrtllmStatistic& s) {
  return problems_of([&] { parse_trtllm_statistic(s, options(std::nullopt)); });
}

TEST_CASE("TensorRT-LLM expert statistic: ranks summed, keyed by model layer",
          "[balance][engines]") {
  const ParsedLoads p = parse_trtllm_statistic(trtllm(), options());
  CHECK(p.loads.per_layer == Rows{{14, 26}, {1, 1}});
  CHECK(p.model_layer_ids == std::vector<int32_t>{3, 4});
  CHECK(p.num_hidden_layers == 5);
  CHECK(p.form == "TensorRT-LLM expert statistic, 2 ranks, iterations 100 to 101");
  CHECK(problems_of([&] {
          parse_trtllm_statistic(trtllm(), options(placement::ModelLayers{{1, 2}, 0, "--hf 'm'"}));
        }) == Problems{"'stat': model layers 3, 4 disagree with the model's MoE layers 1, 2 "
                       "(--hf 'm')"});
  TrtllmStatistic s = trtllm();
  s.meta_info = R"({"num_experts": 2, "top_k": 1})";
  CHECK(trtllm_problems(s) ==
        Problems{"'stat/meta_info.json' at /top_k: unknown key \"top_k\"",
                 "'stat/meta_info.json': missing required key \"num_experts_per_token\""});
  s = trtllm();
  s.ranks[1].name = "rank2.safetensors";
  CHECK(trtllm_problems(s) == Problems{"'stat': rank files are not rank0 to rank1 (2 files)"});
  s = trtllm();
  s.ranks[1].tensors = {{"x_3", "I64", {2}, {1, 1}},
                        {"100_3", "F32", {2}, {}},
                        {"100_3", "I64", {3}, {1, 1, 1}},
                        {"102_3", "I64", {2}, {-1, 0}}};
  CHECK(trtllm_problems(s) ==
        Problems{"'stat/rank1.safetensors' tensor 'x_3': the name is not \"<iteration>_<layer>\"",
                 "'stat/rank1.safetensors' tensor '100_3': dtype F32 is not an integer type "
                 "(token counts)",
                 "'stat/rank1.safetensors' tensor '100_3': expected shape [2] (meta_info.json's "
                 "num_experts), got [3]",
                 "'stat/rank1.safetensors' tensor '102_3': expert 0 has a negative count -1"});
  s = trtllm();
  s.ranks[1].tensors = {{"103_3", "I64", {2}, {1, 1}}};
  CHECK(trtllm_problems(s) ==
        Problems{"'stat': iterations 100 to 103 are not contiguous (3 of them)",
                 "'stat': no rank holds iteration 103 of layer 4"});
  s = trtllm();
  s.ranks[1].name = "rank1.bin";
  CHECK(trtllm_problems(s) == Problems{"'stat/rank1.bin': not a rank<r>.safetensors file"});
  s = trtllm();
  for (auto& rank : s.ranks) rank.tensors.clear();
  CHECK(trtllm_problems(s) == Problems{"'stat': the rank files hold no counts"});
  s.ranks.clear();
  CHECK(trtllm_problems(s) == Problems{"'stat': no rank<r>.safetensors file (TensorRT-LLM's "
                                       "expert statistic has one per EP rank)"});
}

}  // namespace
}  // namespace eplb::balance
