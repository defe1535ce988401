// Which tensors of a Hugging Face checkpoint are routed experts, and how their names map to
// the slot tensors of our checkpoints (docs/FORMAT.md, "Hugging Face name mapping").
//
// Local and pure: config.json and the tensor catalogue come in, a ModelMap comes out.
//
// Every expert tensor lives under a *container* prefix with the model layer number in it,
// e.g. "model.layers.{L}.mlp.experts.". Below the container, a name is either
//   "<E>.<tensor>"  one expert's own tensor (E a decimal logical expert id), or
//   "<tensor>"      a stacked tensor holding every expert along its first dimension
//                   (gpt-oss, Llama-4: "experts.gate_up_proj").
// The family (config.json "model_type") says which model layers are MoE layers and how many
// routed experts they have; the names say which container the checkpoint uses. Shared
// experts ("shared_expert", "shared_experts") lie outside the container and stay out.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/io/tensor.hpp"

namespace eplb::hf {

// What the mapping needs to know of one tensor of the checkpoint.
struct TensorInfo {
  io::DType dtype = io::DType::kU8;
  std::vector<int64_t> shape;
  std::string file;  // the safetensors file holding it (for messages)
};
using Catalog = std::map<std::string, TensorInfo, std::less<>>;

// One per-expert tensor: a slot tensor of our checkpoint.
struct ExpertTensor {
  std::string name;  // slot tensor name: the part of the HF name below "<E>." or the container
  std::string hf_template;  // the HF name with "{L}" and, unless stacked, "{E}"
  bool stacked = false;     // one HF tensor [num_logical_experts, ...] holds every expert
  io::DType dtype = io::DType::kU8;
  std::vector<int64_t> shape;  // one expert's shape as in the HF file (stacked: without dim 0)
  bool operator==(const ExpertTensor&) const = default;
};

struct ModelMap {
  std::string model_type;  // config.json "model_type" ("" with a pattern)
  std::string container;   // e.g. "model.layers.{L}.mlp.experts."
  int32_t num_logical_experts = 0;
  std::vector<int32_t> model_layers;  // model layer number of each MoE layer, ascending
  // config.json "num_hidden_layers" (0 when unknown: --experts without a config)
  int32_t num_hidden_layers = 0;
  std::vector<ExpertTensor> tensors;  // slot tensor order: sorted by name

  // The HF tensor holding (layer, expert, tensor): for a stacked tensor, the whole stack.
  std::string hf_name(size_t tensor_idx, int32_t model_layer, int32_t expert_id) const;
  // The slot tensors as our checkpoint records them (a per-expert scalar becomes shape [1]).
  std::vector<io::TensorSpec> specs() const;
};

// The model types detect_moe_layers knows, comma separated, for messages.
std::string known_model_types();

// The MoE layers a config declares.
struct MoeLayout {
  int32_t num_hidden_layers = 0;
  int32_t num_logical_experts = 0;
  std::vector<int32_t> moe_layers;  // ascending model layer numbers
};
// Throws core::Error(kInput) naming `source` for an unknown model_type (suggesting
// --experts) or a missing/invalid key. A Llama-4 style "text_config" is looked into.
MoeLayout detect_moe_layers(const nlohmann::json& config, const std::string& source);

// "model.layers.{L}.mlp.experts." checked as an --experts pattern: "{L}" exactly once, no
// other braces, ending with '.'. Returns "" when fine, else why not.
std::string pattern_problem(std::string_view pattern);

// Builds the map. With an empty `pattern`, the family comes from `config` and the container
// from the names (one of the known containers must match); with a pattern, the MoE layers
// are those whose number appears under the pattern and the expert count comes from the
// names. Throws core::Error(kInput) listing every problem, each naming the tensor (and its
// file): a layer without experts, an expert missing a tensor, experts or layers whose tensor
// differs in dtype or shape, a stacked tensor whose first dimension is not the expert count.
ModelMap map_model(const nlohmann::json& config, const Catalog& catalog, const std::string& pattern,
                   const std::string& source);

// "{L}" and "{E}" replaced.
std::string expand(std::string_view hf_template, int32_t model_layer, int32_t expert_id);

}  // namespace eplb::hf
