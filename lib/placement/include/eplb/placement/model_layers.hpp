// The model's layer numbering: which of its hidden layers are MoE layers. Engines number a
// placement's layers differently (docs/PLACEMENT.md, "Model layer numbers"): SGLang has a row
// per hidden layer, dense layers included; TensorRT-LLM keys layers by model layer number;
// vLLM and vllm-ascend count MoE layers from 0. A placement records the numbering when it is
// known (Placement::model_layer_ids, num_hidden_layers), so that each form can be written in
// its engine's numbering.
//
// Pure and local: no MPI, CUDA or HDF5.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eplb::placement {

struct ModelLayers {
  std::vector<int32_t> moe_layers;  // the model layer number of each MoE layer, ascending
  // config.json "num_hidden_layers"; 0 when unknown (then taken as the highest MoE layer + 1).
  int32_t num_hidden_layers = 0;
  // Where the numbering came from, for messages: "--model-layers 3-60", "--hf 'ckpt/'".
  std::string source;

  // num_hidden_layers, or the highest MoE layer + 1 when it is unknown.
  int32_t hidden_layers() const;
};

// "--model-layers SPEC": comma-separated layer numbers and inclusive ranges, e.g. "3-60" or
// "1,3,5-7", ascending and distinct, each in [0, 2^20). Throws core::Error(kUsage) naming
// --model-layers and what is wrong.
ModelLayers parse_model_layers_spec(std::string_view spec);

// "3-60", "1, 3, 5-7": consecutive numbers as ranges; "" for none.
std::string format_layer_numbers(const std::vector<int32_t>& layers);
// The same as --model-layers takes it, to paste into a command: "3-60", "1,3,5-7".
std::string format_layer_spec(const std::vector<int32_t>& layers);

// The sentence messages use to say how to give the numbering.
inline constexpr std::string_view kModelLayersHint =
    "give the model's layers with --model-layers (e.g. 3-60), --hf DIR or --checkpoint DIR";

}  // namespace eplb::placement
