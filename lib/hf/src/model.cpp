#include "eplb/hf/model.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

#include "eplb/core/error.hpp"

namespace eplb::hf {
namespace {

using core::Error;
using core::ErrorKind;
using nlohmann::json;

// Where the families keep their routed experts. "{L}" is the model layer number.
constexpr std::string_view kContainers[] = {
    "model.layers.{L}.mlp.experts.",                          // DeepSeek, Qwen, OLMoE, gpt-oss
    "model.layers.{L}.block_sparse_moe.experts.",             // Mixtral
    "model.layers.{L}.feed_forward.experts.",                 // Llama-4 text
    "language_model.model.layers.{L}.feed_forward.experts.",  // Llama-4 multimodal
    "model.language_model.layers.{L}.feed_forward.experts.",
};

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

// Problems of one kind listed one by one up to this many, then counted: a config or a
// tensor name that declares two billion experts must not make two billion lines.
constexpr size_t kListed = 8;

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

// Decimal without sign or leading zeros ("0" itself is fine).
std::optional<int32_t> parse_index(std::string_view text) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  int32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

// A name below a container, taken apart.
struct Match {
  int32_t layer = 0;
  std::optional<int32_t> expert;  // nullopt: stacked
  std::string tensor;             // the slot tensor name
};

std::optional<Match> match(std::string_view container, std::string_view name) {
  const size_t brace = container.find("{L}");
  const std::string_view pre = container.substr(0, brace);
  const std::string_view post = container.substr(brace + 3);
  if (!name.starts_with(pre)) return std::nullopt;
  name.remove_prefix(pre.size());
  const size_t digits = name.find_first_not_of("0123456789");
  if (digits == std::string_view::npos) return std::nullopt;
  auto layer = parse_index(name.substr(0, digits));
  name.remove_prefix(digits);
  if (!layer || !name.starts_with(post)) return std::nullopt;
  name.remove_prefix(post.size());
  Match m;
  m.layer = *layer;
  const size_t dot = name.find('.');
  if (dot != std::string_view::npos) {
    if (auto expert = parse_index(name.substr(0, dot))) {
      m.expert = expert;
      name.remove_prefix(dot + 1);
    }
  }
  if (name.empty()) return std::nullopt;
  m.tensor = std::string(name);
  return m;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string describe(const TensorInfo& t) {
  return std::string(io::to_safetensors(t.dtype)) + " " + shape_text(t.shape);
}

// Everything found below one container, by layer.
struct Found {
  // layer -> tensor -> expert -> catalogue entry name
  std::map<int32_t, std::map<std::string, std::map<int32_t, std::string>>> per_expert;
  // layer -> tensor -> catalogue entry name
  std::map<int32_t, std::map<std::string, std::string>> stacked;
  std::set<int32_t> layers;
};

Found collect(std::string_view container, const Catalog& catalog) {
  Found f;
  for (const auto& [name, info] : catalog) {
    auto m = match(container, name);
    if (!m) continue;
    f.layers.insert(m->layer);
    if (m->expert) {
      f.per_expert[m->layer][m->tensor][*m->expert] = name;
    } else {
      f.stacked[m->layer][m->tensor] = name;
    }
  }
  return f;
}

// The expert count the names imply (pattern mode): highest id + 1, or a stack's dim 0.
int32_t experts_from_names(const Found& f, const Catalog& catalog) {
  int64_t n = 0;
  for (const auto& [layer, tensors] : f.per_expert) {
    for (const auto& [tensor, experts] : tensors)
      n = std::max<int64_t>(n, experts.rbegin()->first + 1);
  }
  for (const auto& [layer, tensors] : f.stacked) {
    for (const auto& [tensor, name] : tensors) {
      const auto& shape = catalog.find(name)->second.shape;
      if (!shape.empty()) n = std::max(n, shape[0]);
    }
  }
  return static_cast<int32_t>(std::min<int64_t>(n, INT32_MAX));
}

std::string where(const Catalog& catalog, const std::string& name) {
  return "'" + name + "' (in '" + catalog.find(name)->second.file + "')";
}

// Checks every MoE layer holds every expert's tensors, all alike; fills map.tensors.
void check_and_fill(const Found& f, const Catalog& catalog, ModelMap& map,
                    const std::string& source, core::ProblemList& problems) {
  const int32_t n = map.num_logical_experts;
  // The slot tensors: every tensor name seen at any MoE layer.
  std::map<std::string, ExpertTensor> tensors;
  std::map<std::string, std::string> reference;  // slot tensor -> HF name it was taken from
  for (int32_t layer : map.model_layers) {
    auto pe = f.per_expert.find(layer);
    if (pe != f.per_expert.end()) {
      for (const auto& [tensor, experts] : pe->second) {
        const auto& first = catalog.find(experts.begin()->second)->second;
        if (tensors.count(tensor) == 0) {
          ExpertTensor t{tensor, map.container, false, first.dtype, first.shape};
          t.hf_template += "{E}." + tensor;
          tensors.emplace(tensor, t);
          reference.emplace(tensor, experts.begin()->second);
        } else if (tensors.at(tensor).stacked) {
          problems.add(where(catalog, experts.begin()->second) + ": tensor '" + tensor +
                       "' is per-expert here but stacked in another layer");
        }
      }
    }
    auto st = f.stacked.find(layer);
    if (st != f.stacked.end()) {
      for (const auto& [tensor, name] : st->second) {
        const auto& info = catalog.find(name)->second;
        if (tensors.count(tensor) == 0) {
          std::vector<int64_t> shape(info.shape.begin() + (info.shape.empty() ? 0 : 1),
                                     info.shape.end());
          tensors.emplace(tensor,
                          ExpertTensor{tensor, map.container + tensor, true, info.dtype, shape});
          reference.emplace(tensor, name);
        } else if (!tensors.at(tensor).stacked) {
          problems.add(where(catalog, name) + ": tensor '" + tensor +
                       "' is stacked here but per-expert in another layer");
        }
      }
    }
  }
  if (tensors.empty()) {
    problems.add("no expert tensors found under '" + map.container + "'");
    return;
  }
  for (auto& [tensor, t] : tensors) {
    const bool bad_name =
        tensor == "logical_ids" || tensor == "xxh3" ||
        tensor.find_first_not_of(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
            std::string::npos;
    if (bad_name) {
      problems.add("expert tensor '" + t.hf_template + "': '" + tensor +
                   "' cannot name a slot tensor (allowed: letters, digits, '_', '.', '-')");
      continue;
    }
    for (int32_t layer : map.model_layers) {
      // The experts to look at: those found (below n), and those missing, of which the
      // first kListed are named and the rest counted. Never a loop over n itself.
      std::vector<int32_t> experts;
      std::string more_missing;  // added after the named ones
      if (t.stacked) {
        experts.push_back(0);
      } else {
        static const std::map<int32_t, std::string> kNone;
        const std::map<int32_t, std::string>* ids = &kNone;
        if (auto pe = f.per_expert.find(layer); pe != f.per_expert.end()) {
          if (auto te = pe->second.find(tensor); te != pe->second.end()) ids = &te->second;
        }
        for (const auto& [e, name] : *ids) {
          if (e >= n) break;
          experts.push_back(e);
        }
        const auto present = static_cast<int64_t>(experts.size());
        std::vector<int32_t> missing;
        auto next = ids->begin();
        for (int32_t e = 0; e < n && missing.size() < kListed; ++e) {
          while (next != ids->end() && next->first < e) ++next;
          if (next == ids->end() || next->first != e) missing.push_back(e);
        }
        experts.insert(experts.end(), missing.begin(), missing.end());
        if (n - present > static_cast<int64_t>(missing.size())) {
          more_missing = "'" + source + "' layer " + std::to_string(layer) + ": tensor '" +
                         t.hf_template + "' is missing for " +
                         std::to_string(n - present - static_cast<int64_t>(missing.size())) +
                         " more of the " + std::to_string(n) + " experts (" +
                         std::to_string(present) + " found)";
        }
      }
      for (const int32_t e : experts) {
        const std::string name = expand(t.hf_template, layer, e);
        auto it = catalog.find(name);
        if (it == catalog.end()) {
          problems.add("'" + source + "' layer " + std::to_string(layer) +
                       (t.stacked ? "" : ", expert " + std::to_string(e)) + ": tensor '" + name +
                       "' is missing from the checkpoint");
          continue;
        }
        std::vector<int64_t> shape = it->second.shape;
        if (t.stacked) {
          if (shape.empty() || shape[0] != n) {
            problems.add(where(catalog, name) + ": a stacked expert tensor must have " +
                         std::to_string(n) + " experts along dimension 0, has shape " +
                         shape_text(shape));
            continue;
          }
          shape.erase(shape.begin());
        }
        if (it->second.dtype != t.dtype || shape != t.shape) {
          problems.add("layer " + std::to_string(layer) +
                       (t.stacked ? "" : ", expert " + std::to_string(e)) + ": " +
                       where(catalog, name) + " is " + describe(it->second) + ", but " +
                       where(catalog, reference.at(tensor)) + " is " +
                       describe(catalog.find(reference.at(tensor))->second) +
                       ": the experts of a model must all have the same tensors");
        }
      }
      if (!more_missing.empty()) problems.add(more_missing);
    }
    // A loop, not a lambda: clang 14 (Debian 12's, the fuzz build) cannot capture `t`.
    int64_t elements = 1;
    for (int64_t d : t.shape) elements *= d;
    if (elements == 0) problems.add("expert tensor '" + t.hf_template + "' has no bytes");
  }
  // Experts beyond the declared count.
  for (const auto& [layer, by_tensor] : f.per_expert) {
    if (!std::binary_search(map.model_layers.begin(), map.model_layers.end(), layer)) continue;
    for (const auto& [tensor, experts] : by_tensor) {
      for (const auto& [e, name] : experts) {
        if (e >= n) {
          problems.add(where(catalog, name) + ": expert " + std::to_string(e) +
                       " is beyond the model's " + std::to_string(n) + " routed experts");
        }
      }
    }
  }
  for (auto& [tensor, t] : tensors) map.tensors.push_back(t);
}

}  // namespace

std::string ModelMap::hf_name(size_t tensor_idx, int32_t model_layer, int32_t expert_id) const {
  return expand(tensors.at(tensor_idx).hf_template, model_layer, expert_id);
}

std::vector<io::TensorSpec> ModelMap::specs() const {
  std::vector<io::TensorSpec> out;
  for (const auto& t : tensors) {
    out.push_back({t.name, t.dtype, t.shape.empty() ? std::vector<int64_t>{1} : t.shape});
  }
  return out;
}

std::string known_model_types() {
  std::string out;
  for (const auto& f : kFamilies) out += (out.empty() ? "" : ", ") + std::string(f.model_type);
  return out;
}

MoeLayout detect_moe_layers(const json& config_in, const std::string& source) {
  if (!config_in.is_object()) throw Error(ErrorKind::kInput, "'" + source + "': not a JSON object");
  const std::string model_type = model_type_of(config_in, source);
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

std::string pattern_problem(std::string_view pattern) {
  const size_t l = pattern.find("{L}");
  if (l == std::string_view::npos) return "it must contain {L} (the model layer number)";
  if (pattern.find("{L}", l + 1) != std::string_view::npos) return "it must contain {L} once";
  std::string rest(pattern);
  rest.erase(l, 3);
  if (rest.find_first_of("{}") != std::string::npos) {
    return "only {L} may appear in braces (the expert id is the name component after the "
           "pattern)";
  }
  if (!pattern.ends_with('.')) return "it must end with '.'";
  return "";
}

std::string expand(std::string_view hf_template, int32_t model_layer, int32_t expert_id) {
  std::string out(hf_template);
  for (size_t at; (at = out.find("{L}")) != std::string::npos;) {
    out.replace(at, 3, std::to_string(model_layer));
  }
  for (size_t at; (at = out.find("{E}")) != std::string::npos;) {
    out.replace(at, 3, std::to_string(expert_id));
  }
  return out;
}

ModelMap map_model(const json& config, const Catalog& catalog, const std::string& pattern,
                   const std::string& source) {
  ModelMap map;
  core::ProblemList problems(ErrorKind::kInput);
  Found found;
  if (!pattern.empty()) {
    if (std::string why = pattern_problem(pattern); !why.empty()) {
      throw Error(ErrorKind::kUsage, "--experts '" + pattern + "': " + why);
    }
    map.container = pattern;
    found = collect(pattern, catalog);
    if (found.layers.empty()) {
      throw Error(ErrorKind::kInput,
                  "'" + source + "': no tensor name matches --experts '" + pattern + "'");
    }
    map.model_layers.assign(found.layers.begin(), found.layers.end());
    map.num_logical_experts = experts_from_names(found, catalog);
    if (config.is_object()) map.model_type = model_type_of(config, source + "/config.json");
  } else {
    const MoeLayout layout = detect_moe_layers(config, source + "/config.json");
    map.model_type = model_type_of(config, source + "/config.json");
    map.num_logical_experts = layout.num_logical_experts;
    map.model_layers = layout.moe_layers;
    std::vector<std::string_view> matching;
    for (auto container : kContainers) {
      Found f = collect(container, catalog);
      // Layers past num_hidden_layers (DeepSeek's multi-token-prediction layer) are not
      // placed: their tensors are copied like any other.
      std::erase_if(f.layers, [&](int32_t l) { return l >= layout.num_hidden_layers; });
      if (!f.layers.empty()) {
        matching.push_back(container);
        found = std::move(f);
      }
    }
    if (matching.size() != 1) {
      std::string known;
      for (auto c : (matching.empty() ? std::vector<std::string_view>(std::begin(kContainers),
                                                                      std::end(kContainers))
                                      : matching)) {
        known += (known.empty() ? "'" : ", '") + std::string(c) + "'";
      }
      throw Error(
          ErrorKind::kInput,
          "'" + source + "': " +
              (matching.empty() ? "no expert tensors found under any of " + known
                                : "expert tensors found under several containers: " + known) +
              "; name them with --experts");
    }
    map.container = std::string(matching.front());
    for (int32_t layer : found.layers) {
      if (!std::binary_search(map.model_layers.begin(), map.model_layers.end(), layer)) {
        problems.add("'" + source + "': layer " + std::to_string(layer) +
                     " holds expert tensors under '" + expand(map.container, layer, 0) +
                     "', but config.json makes it a dense layer");
      }
    }
    std::vector<int32_t> empty_layers;
    for (int32_t layer : map.model_layers) {
      if (found.layers.count(layer) == 0) empty_layers.push_back(layer);
    }
    for (size_t i = 0; i < std::min(empty_layers.size(), kListed); ++i) {
      problems.add("'" + source + "': MoE layer " + std::to_string(empty_layers[i]) +
                   " has no expert tensors (nothing named '" +
                   expand(map.container, empty_layers[i], 0) + "...')");
    }
    if (empty_layers.size() > kListed) {
      problems.add("'" + source + "': " + std::to_string(empty_layers.size() - kListed) +
                   " more of the " + std::to_string(map.model_layers.size()) +
                   " MoE layers config.json declares have no expert tensors either (the last: " +
                   std::to_string(empty_layers.back()) + ")");
    }
  }
  if (map.num_logical_experts < 1) problems.add("'" + source + "': no expert found");
  problems.throw_if_any();
  check_and_fill(found, catalog, map, source, problems);
  problems.throw_if_any();
  return map;
}

}  // namespace eplb::hf
