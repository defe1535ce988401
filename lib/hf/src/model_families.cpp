// The Hugging Face model families: which model layers a config.json declares MoE layers, and
// how many routed experts they have (eplb/hf/model.hpp detect_moe_layers).
#include <algorithm>
#include <optional>
#include <set>

#include "eplb/core/error.hpp"
#include "eplb/hf/model.hpp"
#include "model_detail.hpp"

namespace eplb::hf {
namespace {

using core::Error;
using core::ErrorKind;
using nlohmann::json;

struct Family {
  std::string_view model_type;
  // The keys that may hold the routed expert count, first found wins (transformers 5
  // writes "num_local_experts" where released Qwen configs have "num_experts").
  std::string_view experts_keys[2];
};
constexpr Family kFamilies[] = {
    {"deepseek_v3", {"n_routed_experts", ""}},
    {"deepseek_v2", {"n_routed_experts", ""}},
    {"kimi_k2", {"n_routed_experts", ""}},
    {"qwen3_moe", {"num_experts", "num_local_experts"}},
    {"qwen2_moe", {"num_experts", "num_local_experts"}},
    {"olmoe", {"num_experts", "num_local_experts"}},
    {"mixtral", {"num_local_experts", ""}},
    {"gpt_oss", {"num_local_experts", ""}},
    {"llama4", {"num_local_experts", ""}},
    {"llama4_text", {"num_local_experts", ""}},
};

std::optional<int64_t> int_key(const json& j, std::string_view key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

int32_t required_int(const json& j, std::string_view key, const std::string& source, int64_t min,
                     int64_t max = INT32_MAX) {
  auto value = int_key(j, key);
  if (!value || *value < min || *value > max) {
    throw Error(ErrorKind::kInput, "'" + source + "': \"" + std::string(key) +
                                       "\" must be an integer from " + std::to_string(min) +
                                       " to " + std::to_string(max));
  }
  return static_cast<int32_t>(*value);
}

// More model layers than any model has: the layer list is built from the config before a
// tensor is looked at, so a typo there must not ask for gigabytes.
constexpr int64_t kMaxLayers = int64_t{1} << 20;

std::set<int64_t> int_list(const json& j, std::string_view key, const std::string& source) {
  std::set<int64_t> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) {
    throw Error(ErrorKind::kInput,
                "'" + source + "': \"" + std::string(key) + "\" must be an array of integers");
  }
  for (const auto& v : *it) {
    if (!v.is_number_integer()) {
      throw Error(ErrorKind::kInput,
                  "'" + source + "': \"" + std::string(key) + "\" must be an array of integers");
    }
    out.insert(v.get<int64_t>());
  }
  return out;
}

}  // namespace

namespace detail {

// config.json's "model_type": "" when absent; anything but a string is an input error.
std::string model_type_of(const json& config, const std::string& source) {
  auto it = config.find("model_type");
  if (it == config.end() || it->is_null()) return "";
  if (!it->is_string()) {
    throw Error(ErrorKind::kInput, "'" + source + "': \"model_type\" must be a string, got " +
                                       std::string(it->type_name()));
  }
  return it->get<std::string>();
}

}  // namespace detail

std::string known_model_types() {
  std::string out;
  for (const auto& f : kFamilies) out += (out.empty() ? "" : ", ") + std::string(f.model_type);
  return out;
}

MoeLayout detect_moe_layers(const json& config_in, const std::string& source) {
  if (!config_in.is_object()) throw Error(ErrorKind::kInput, "'" + source + "': not a JSON object");
  const std::string model_type = detail::model_type_of(config_in, source);
  const Family* family = nullptr;
  for (const auto& f : kFamilies) {
    if (f.model_type == model_type) family = &f;
  }
  if (family == nullptr) {
    throw Error(ErrorKind::kInput, "'" + source + "': model_type \"" + model_type +
                                       "\" is not a known MoE family (" + known_model_types() +
                                       "); name its expert tensors with --experts (docs/CLI.md)");
  }
  // Llama-4 multimodal configs keep the language model's keys in "text_config".
  const json& config = config_in.contains("text_config") && config_in["text_config"].is_object()
                           ? config_in["text_config"]
                           : config_in;
  MoeLayout out;
  out.num_hidden_layers = required_int(config, "num_hidden_layers", source, 1, kMaxLayers);
  std::string_view experts_key = family->experts_keys[0];
  for (std::string_view key : family->experts_keys) {
    if (!key.empty() && config.contains(key)) {
      experts_key = key;
      break;
    }
  }
  out.num_logical_experts = required_int(config, experts_key, source, 1);
  const std::string_view type = family->model_type;
  const bool deepseek = type == "deepseek_v3" || type == "deepseek_v2" || type == "kimi_k2";
  const bool qwen = type == "qwen3_moe" || type == "qwen2_moe";
  const bool llama4 = type == "llama4" || type == "llama4_text";
  const int64_t first_dense = int_key(config, "first_k_dense_replace").value_or(0);
  const int64_t freq = std::max<int64_t>(1, int_key(config, "moe_layer_freq").value_or(1));
  const int64_t sparse_step = int_key(config, "decoder_sparse_step").value_or(1);
  if (qwen && sparse_step < 1) {
    throw Error(ErrorKind::kInput, "'" + source + "': \"decoder_sparse_step\" must be >= 1");
  }
  const std::set<int64_t> mlp_only =
      qwen ? int_list(config, "mlp_only_layers", source) : std::set<int64_t>();
  const bool moe_listed =
      llama4 && config.contains("moe_layers") && !config["moe_layers"].is_null();
  const std::set<int64_t> moe_layers =
      llama4 ? int_list(config, "moe_layers", source) : std::set<int64_t>();
  const int64_t interleave =
      std::max<int64_t>(1, int_key(config, "interleave_moe_layer_step").value_or(1));
  for (int32_t layer = 0; layer < out.num_hidden_layers; ++layer) {
    bool moe = true;
    if (deepseek) {
      moe = layer >= first_dense && layer % freq == 0;
    } else if (qwen) {
      moe = mlp_only.count(layer) == 0 && (layer + 1) % sparse_step == 0;
    } else if (llama4) {
      moe = moe_listed ? moe_layers.count(layer) != 0 : (layer + 1) % interleave == 0;
    }
    if (moe) out.moe_layers.push_back(layer);
  }
  if (out.moe_layers.empty()) {
    throw Error(ErrorKind::kInput, "'" + source + "': the config declares no MoE layer");
  }
  return out;
}

}  // namespace eplb::hf
