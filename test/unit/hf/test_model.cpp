// The Hugging Face name mapping (eplb/hf/model.hpp): families, containers, errors.
#include <algorithm>
#include <catch2/catch.hpp>

#include "eplb/core/error.hpp"
#include "eplb/hf/model.hpp"

namespace {

using eplb::hf::Catalog;
using eplb::hf::map_model;
using eplb::io::DType;
using nlohmann::json;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const eplb::core::Error& e) {
    std::string all;
    for (const auto& p : e.problems()) all += p + "\n";
    return all;
  }
  return "";
}

// DeepSeek-style per-expert layout: layer 0 dense, layers 1..2 MoE with 4 experts.
Catalog deepseek_catalog(int32_t num_layers = 3, int32_t num_experts = 4) {
  Catalog c;
  c["model.embed_tokens.weight"] = {DType::kBf16, {128, 64}, "a.safetensors"};
  c["model.layers.0.mlp.gate_proj.weight"] = {DType::kBf16, {96, 64}, "a.safetensors"};
  for (int32_t l = 1; l < num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    c[p + "gate.weight"] = {DType::kBf16, {num_experts, 64}, "a.safetensors"};
    c[p + "shared_experts.up_proj.weight"] = {DType::kBf16, {32, 64}, "a.safetensors"};
    for (int32_t e = 0; e < num_experts; ++e) {
      const std::string x = p + "experts." + std::to_string(e) + ".";
      c[x + "gate_proj.weight"] = {DType::kFp8E4m3, {32, 64}, "b.safetensors"};
      c[x + "gate_proj.weight_scale_inv"] = {DType::kFp32, {1, 1}, "c.safetensors"};
      c[x + "down_proj.weight"] = {DType::kFp8E4m3, {64, 32}, "c.safetensors"};
    }
  }
  return c;
}

json deepseek_config() {
  return {{"model_type", "deepseek_v3"},
          {"num_hidden_layers", 3},
          {"n_routed_experts", 4},
          {"first_k_dense_replace", 1},
          {"moe_layer_freq", 1}};
}

}  // namespace

TEST_CASE("deepseek_v3: dense leading layers, per-expert tensors, FP8 scales travel along") {
  auto map = map_model(deepseek_config(), deepseek_catalog(), "", "hf");
  CHECK(map.model_type == "deepseek_v3");
  CHECK(map.container == "model.layers.{L}.mlp.experts.");
  CHECK(map.num_logical_experts == 4);
  CHECK(map.model_layers == std::vector<int32_t>{1, 2});
  CHECK(map.num_hidden_layers == 3);  // SGLang's placement has a row for each
  REQUIRE(map.tensors.size() == 3);
  CHECK(map.tensors[0].name == "down_proj.weight");
  CHECK(map.tensors[1].name == "gate_proj.weight");
  CHECK(map.tensors[2].name == "gate_proj.weight_scale_inv");
  CHECK(map.tensors[2].dtype == DType::kFp32);
  CHECK_FALSE(map.tensors[1].stacked);
  CHECK(map.hf_name(1, 2, 3) == "model.layers.2.mlp.experts.3.gate_proj.weight");
  auto specs = map.specs();
  CHECK(specs[0].shape == std::vector<int64_t>{64, 32});
}

TEST_CASE("a layer past num_hidden_layers (DeepSeek's MTP layer) is not placed") {
  auto catalog = deepseek_catalog(4);  // layer 3 holds experts, config says 3 layers
  auto map = map_model(deepseek_config(), catalog, "", "hf");
  CHECK(map.model_layers == std::vector<int32_t>{1, 2});
}

TEST_CASE("kimi_k2 maps like deepseek_v3; unknown model types ask for --experts") {
  auto config = deepseek_config();
  config["model_type"] = "kimi_k2";
  CHECK(map_model(config, deepseek_catalog(), "", "hf").model_layers.size() == 2);
  config["model_type"] = "jamba";
  CHECK_THAT(message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); }),
             Catch::Contains("model_type \"jamba\" is not a known MoE family") &&
                 Catch::Contains("--experts"));
}

TEST_CASE("qwen: decoder_sparse_step and mlp_only_layers; shared_expert stays out") {
  Catalog c;
  json config = {{"model_type", "qwen2_moe"},
                 {"num_hidden_layers", 4},
                 {"num_experts", 2},
                 {"decoder_sparse_step", 2},
                 {"mlp_only_layers", json::array({3})}};
  for (int32_t l : {1}) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    c[p + "shared_expert.up_proj.weight"] = {DType::kBf16, {8, 4}, "a"};
    for (int32_t e = 0; e < 2; ++e) {
      c[p + "experts." + std::to_string(e) + ".up_proj.weight"] = {DType::kBf16, {8, 4}, "a"};
    }
  }
  auto map = map_model(config, c, "", "hf");
  CHECK(map.model_layers == std::vector<int32_t>{1});
  config.erase("num_experts");  // transformers 5 writes num_local_experts
  config["num_local_experts"] = 2;
  CHECK(map_model(config, c, "", "hf").num_logical_experts == 2);
  REQUIRE(map.tensors.size() == 1);
  CHECK(map.tensors[0].hf_template == "model.layers.{L}.mlp.experts.{E}.up_proj.weight");
}

TEST_CASE("mixtral: block_sparse_moe container") {
  Catalog c;
  json config = {{"model_type", "mixtral"}, {"num_hidden_layers", 1}, {"num_local_experts", 2}};
  for (int32_t e = 0; e < 2; ++e) {
    for (const char* w : {"w1", "w2", "w3"}) {
      c["model.layers.0.block_sparse_moe.experts." + std::to_string(e) + "." + w + ".weight"] = {
          DType::kBf16, {8, 4}, "a"};
    }
  }
  auto map = map_model(config, c, "", "hf");
  CHECK(map.container == "model.layers.{L}.block_sparse_moe.experts.");
  CHECK(map.tensors.size() == 3);
  CHECK(map.tensors[0].name == "w1.weight");
}

TEST_CASE("stacked experts (gpt-oss, llama4): dim 0 is the expert") {
  Catalog c;
  json config = {
      {"model_type", "llama4"},
      {"text_config",
       {{"num_hidden_layers", 2}, {"num_local_experts", 3}, {"interleave_moe_layer_step", 2}}}};
  c["model.layers.1.feed_forward.experts.gate_up_proj"] = {DType::kBf16, {3, 4, 16}, "a"};
  c["model.layers.1.feed_forward.experts.down_proj"] = {DType::kBf16, {3, 8, 4}, "b"};
  c["model.layers.1.feed_forward.shared_expert.down_proj.weight"] = {DType::kBf16, {4, 8}, "b"};
  c["model.layers.0.feed_forward.down_proj.weight"] = {DType::kBf16, {4, 8}, "b"};
  auto map = map_model(config, c, "", "hf");
  CHECK(map.model_layers == std::vector<int32_t>{1});
  REQUIRE(map.tensors.size() == 2);
  CHECK(map.tensors[1].stacked);
  CHECK(map.tensors[1].shape == std::vector<int64_t>{4, 16});
  CHECK(map.hf_name(1, 1, 2) == "model.layers.1.feed_forward.experts.gate_up_proj");

  c["model.layers.1.feed_forward.experts.down_proj"] = {DType::kBf16, {2, 8, 4}, "b"};
  CHECK_THAT(message_of([&] { map_model(config, c, "", "hf"); }),
             Catch::Contains("'model.layers.1.feed_forward.experts.down_proj' (in 'b'): a "
                             "stacked expert tensor must have 3 experts along dimension 0"));
}

TEST_CASE("errors: missing expert, differing shape or dtype, missing layer, extra expert") {
  auto c = deepseek_catalog();
  c.erase("model.layers.2.mlp.experts.1.down_proj.weight");
  c["model.layers.1.mlp.experts.3.gate_proj.weight"] = {DType::kFp8E4m3, {16, 64}, "b.safetensors"};
  c["model.layers.2.mlp.experts.2.gate_proj.weight_scale_inv"] = {
      DType::kBf16, {1, 1}, "c.safetensors"};
  c["model.layers.2.mlp.experts.4.down_proj.weight"] = {DType::kFp8E4m3, {64, 32}, "c.safetensors"};
  auto text = message_of([&] { map_model(deepseek_config(), c, "", "hf"); });
  CHECK_THAT(text, Catch::Contains("'hf' layer 2, expert 1: tensor "
                                   "'model.layers.2.mlp.experts.1.down_proj.weight' is missing"));
  CHECK_THAT(text, Catch::Contains("layer 1, expert 3: 'model.layers.1.mlp.experts.3.gate_proj."
                                   "weight' (in 'b.safetensors') is F8_E4M3 [16, 64], but "));
  CHECK_THAT(text,
             Catch::Contains("gate_proj.weight_scale_inv' (in 'c.safetensors') is BF16 [1, 1]"));
  CHECK_THAT(text, Catch::Contains("expert 4 is beyond the model's 4 routed experts"));

  auto config = deepseek_config();
  config["num_hidden_layers"] = 4;
  CHECK_THAT(message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); }),
             Catch::Contains("MoE layer 3 has no expert tensors"));
  config = deepseek_config();
  config["first_k_dense_replace"] = 2;
  CHECK_THAT(message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); }),
             Catch::Contains("layer 1 holds expert tensors under 'model.layers.1.mlp.experts.', "
                             "but config.json makes it a dense layer"));
}

TEST_CASE("--experts pattern: layers and expert count from the names") {
  Catalog c;
  for (int32_t l : {2, 5}) {
    for (int32_t e = 0; e < 3; ++e) {
      c["blocks." + std::to_string(l) + ".moe." + std::to_string(e) + ".w.weight"] = {
          DType::kFp16, {2, 2}, "a"};
    }
    c["blocks." + std::to_string(l) + ".moe.bias"] = {DType::kFp32, {3}, "a"};
  }
  auto map = map_model(json(), c, "blocks.{L}.moe.", "hf");
  CHECK(map.model_layers == std::vector<int32_t>{2, 5});
  CHECK(map.num_logical_experts == 3);
  REQUIRE(map.tensors.size() == 2);
  CHECK(map.tensors[0].name == "bias");
  CHECK(map.tensors[0].stacked);
  CHECK(map.specs()[0].shape == std::vector<int64_t>{1});  // a per-expert scalar
  CHECK(map.tensors[1].hf_template == "blocks.{L}.moe.{E}.w.weight");
  CHECK(map.num_hidden_layers == 0);  // no config.json: unknown
  CHECK(map_model(json{{"num_hidden_layers", 7}}, c, "blocks.{L}.moe.", "hf").num_hidden_layers ==
        7);

  CHECK(eplb::hf::pattern_problem("blocks.moe.") == "it must contain {L} (the model layer number)");
  CHECK(eplb::hf::pattern_problem("blocks.{L}.moe.{E}.") != "");
  CHECK(eplb::hf::pattern_problem("blocks.{L}.moe") == "it must end with '.'");
  CHECK_THAT(message_of([&] { map_model(json(), c, "x.{L}.", "hf"); }),
             Catch::Contains("no tensor name matches --experts 'x.{L}.'"));
}

TEST_CASE("a huge expert or layer count is an input error, listed briefly, not a loop over it") {
  const auto lines = [](const std::string& text) {
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  };
  // Two billion routed experts in config.json, four in the files: 8 named per layer and
  // tensor, the rest counted (this ran out of memory before).
  auto config = deepseek_config();
  config["n_routed_experts"] = 2000000000;
  auto text = message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); });
  CHECK_THAT(text, Catch::Contains("'hf' layer 1, expert 4: tensor "
                                   "'model.layers.1.mlp.experts.4.down_proj.weight' is missing"));
  CHECK_THAT(text, Catch::Contains("'hf' layer 2, expert 11: tensor "));
  CHECK_THAT(text, !Catch::Contains("expert 12:"));
  CHECK_THAT(text, Catch::Contains("'hf' layer 2: tensor 'model.layers.{L}.mlp.experts.{E}.gate_"
                                   "proj.weight' is missing for 1999999988 more of the 2000000000 "
                                   "experts (4 found)"));
  CHECK(lines(text) == 2 * 3 * 9);  // 2 layers x 3 tensors x (8 named + 1 count)

  // The same from a name: an expert id near INT32_MAX under --experts.
  Catalog c;
  c["blocks.0.moe.0.w"] = {DType::kFp16, {2}, "a"};
  c["blocks.0.moe.2147483646.w"] = {DType::kFp16, {2}, "a"};
  text = message_of([&] { map_model(json(), c, "blocks.{L}.moe.", "hf"); });
  CHECK_THAT(text, Catch::Contains("is missing for 2147483637 more of the 2147483647 experts (2 "
                                   "found)"));
  CHECK(lines(text) == 9);

  // Layers: more than any model has is refused up front; many without tensors are counted.
  config = deepseek_config();
  config["num_hidden_layers"] = 2000000000;
  CHECK_THAT(message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); }),
             Catch::Contains("\"num_hidden_layers\" must be an integer from 1 to 1048576"));
  config["num_hidden_layers"] = 1048576;
  text = message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); });
  CHECK_THAT(text, Catch::Contains("'hf': MoE layer 3 has no expert tensors"));
  CHECK_THAT(text, Catch::Contains("'hf': 1048565 more of the 1048575 MoE layers config.json "
                                   "declares have no expert tensors either (the last: 1048575)"));
  CHECK(lines(text) == 9);
}

TEST_CASE("a model_type that is not a string is an input error") {
  auto config = deepseek_config();
  config["model_type"] = 8;
  CHECK_THAT(message_of([&] { map_model(config, deepseek_catalog(), "", "hf"); }),
             Catch::Contains("'hf/config.json': \"model_type\" must be a string, got number"));
  // With --experts the family is not needed, but a config that has one must still be sane.
  Catalog c;
  c["blocks.0.moe.0.w"] = {DType::kFp16, {2}, "a"};
  CHECK_THAT(message_of([&] { map_model(config, c, "blocks.{L}.moe.", "hf"); }),
             Catch::Contains("\"model_type\" must be a string, got number"));
}
