#include "eplb/hf/model.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

#include "eplb/core/error.hpp"
#include "model_detail.hpp"

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

// Problems of one kind listed one by one up to this many, then counted: a config or a
// tensor name that declares two billion experts must not make two billion lines.
constexpr size_t kListed = 8;

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

// The slot tensors: every tensor name seen at any MoE layer, each with the HF tensor it was
// first seen as (the reference the others are compared with).
struct SlotTensors {
  std::map<std::string, ExpertTensor> tensors;
  std::map<std::string, std::string> reference;  // slot tensor -> HF name
};

SlotTensors slot_tensors(const Found& f, const Catalog& catalog, const ModelMap& map,
                         core::ProblemList& problems) {
  SlotTensors out;
  for (int32_t layer : map.model_layers) {
    if (auto pe = f.per_expert.find(layer); pe != f.per_expert.end()) {
      for (const auto& [tensor, experts] : pe->second) {
        const auto& first = catalog.find(experts.begin()->second)->second;
        if (out.tensors.count(tensor) == 0) {
          ExpertTensor t{tensor, map.container, false, first.dtype, first.shape};
          t.hf_template += "{E}." + tensor;
          out.tensors.emplace(tensor, t);
          out.reference.emplace(tensor, experts.begin()->second);
        } else if (out.tensors.at(tensor).stacked) {
          problems.add(where(catalog, experts.begin()->second) + ": tensor '" + tensor +
                       "' is per-expert here but stacked in another layer");
        }
      }
    }
    if (auto st = f.stacked.find(layer); st != f.stacked.end()) {
      for (const auto& [tensor, name] : st->second) {
        const auto& info = catalog.find(name)->second;
        if (out.tensors.count(tensor) == 0) {
          std::vector<int64_t> shape(info.shape.begin() + (info.shape.empty() ? 0 : 1),
                                     info.shape.end());
          out.tensors.emplace(
              tensor, ExpertTensor{tensor, map.container + tensor, true, info.dtype, shape});
          out.reference.emplace(tensor, name);
        } else if (!out.tensors.at(tensor).stacked) {
          problems.add(where(catalog, name) + ": tensor '" + tensor +
                       "' is stacked here but per-expert in another layer");
        }
      }
    }
  }
  return out;
}

// The experts of one layer and tensor to look at: those found (below n), and those missing,
// of which the first kListed are named and the rest counted in `more_missing`. Never a loop
// over n itself.
std::vector<int32_t> experts_to_check(const Found& f, const ExpertTensor& t, int32_t layer,
                                      int32_t n, const std::string& source,
                                      std::string& more_missing) {
  std::vector<int32_t> experts;
  if (t.stacked) return {0};
  static const std::map<int32_t, std::string> kNone;
  const std::map<int32_t, std::string>* ids = &kNone;
  if (auto pe = f.per_expert.find(layer); pe != f.per_expert.end()) {
    if (auto te = pe->second.find(t.name); te != pe->second.end()) ids = &te->second;
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
    more_missing =
        "'" + source + "' layer " + std::to_string(layer) + ": tensor '" + t.hf_template +
        "' is missing for " + std::to_string(n - present - static_cast<int64_t>(missing.size())) +
        " more of the " + std::to_string(n) + " experts (" + std::to_string(present) + " found)";
  }
  return experts;
}

// One expert's (or a stack's) HF tensor of one layer against the reference's dtype and shape.
void check_expert_tensor(const Catalog& catalog, const ExpertTensor& t, const std::string& name,
                         int32_t layer, int32_t e, int32_t n, const std::string& reference,
                         const std::string& source, core::ProblemList& problems) {
  const auto it = catalog.find(name);
  const std::string expert = t.stacked ? "" : ", expert " + std::to_string(e);
  if (it == catalog.end()) {
    problems.add("'" + source + "' layer " + std::to_string(layer) + expert + ": tensor '" + name +
                 "' is missing from the checkpoint");
    return;
  }
  std::vector<int64_t> shape = it->second.shape;
  if (t.stacked) {
    if (shape.empty() || shape[0] != n) {
      problems.add(where(catalog, name) + ": a stacked expert tensor must have " +
                   std::to_string(n) + " experts along dimension 0, has shape " +
                   shape_text(shape));
      return;
    }
    shape.erase(shape.begin());
  }
  if (it->second.dtype != t.dtype || shape != t.shape) {
    problems.add("layer " + std::to_string(layer) + expert + ": " + where(catalog, name) + " is " +
                 describe(it->second) + ", but " + where(catalog, reference) + " is " +
                 describe(catalog.find(reference)->second) +
                 ": the experts of a model must all have the same tensors");
  }
}

bool bad_slot_name(const std::string& tensor) {
  return tensor == "logical_ids" || tensor == "xxh3" ||
         tensor.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
             std::string::npos;
}

// Checks every MoE layer holds every expert's tensors, all alike; fills map.tensors.
void check_and_fill(const Found& f, const Catalog& catalog, ModelMap& map,
                    const std::string& source, core::ProblemList& problems) {
  const int32_t n = map.num_logical_experts;
  const SlotTensors slots = slot_tensors(f, catalog, map, problems);
  if (slots.tensors.empty()) {
    problems.add("no expert tensors found under '" + map.container + "'");
    return;
  }
  for (const auto& [tensor, t] : slots.tensors) {
    if (bad_slot_name(tensor)) {
      problems.add("expert tensor '" + t.hf_template + "': '" + tensor +
                   "' cannot name a slot tensor (allowed: letters, digits, '_', '.', '-')");
      continue;
    }
    for (int32_t layer : map.model_layers) {
      std::string more_missing;  // added after the named ones
      for (const int32_t e : experts_to_check(f, t, layer, n, source, more_missing)) {
        check_expert_tensor(catalog, t, expand(t.hf_template, layer, e), layer, e, n,
                            slots.reference.at(tensor), source, problems);
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
  for (const auto& [tensor, t] : slots.tensors) map.tensors.push_back(t);
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

namespace {

// --experts PATTERN: the MoE layers are those under the pattern, the expert count the names'.
Found map_pattern(const json& config, const Catalog& catalog, const std::string& pattern,
                  const std::string& source, ModelMap& map) {
  if (std::string why = pattern_problem(pattern); !why.empty()) {
    throw Error(ErrorKind::kUsage, "--experts '" + pattern + "': " + why);
  }
  map.container = pattern;
  Found found = collect(pattern, catalog);
  if (found.layers.empty()) {
    throw Error(ErrorKind::kInput,
                "'" + source + "': no tensor name matches --experts '" + pattern + "'");
  }
  map.model_layers.assign(found.layers.begin(), found.layers.end());
  map.num_logical_experts = experts_from_names(found, catalog);
  if (config.is_object()) {
    map.model_type = detail::model_type_of(config, source + "/config.json");
    const json& text = config.contains("text_config") && config["text_config"].is_object()
                           ? config["text_config"]
                           : config;
    if (auto it = text.find("num_hidden_layers"); it != text.end() && it->is_number_integer() &&
                                                  it->get<int64_t>() > map.model_layers.back() &&
                                                  it->get<int64_t>() <= INT32_MAX) {
      map.num_hidden_layers = it->get<int32_t>();
    }
  }
  return found;
}

// The family's one container that holds expert tensors: the names decide.
Found find_container(const Catalog& catalog, const MoeLayout& layout, const std::string& source,
                     ModelMap& map) {
  Found found;
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
    throw Error(ErrorKind::kInput,
                "'" + source + "': " +
                    (matching.empty() ? "no expert tensors found under any of " + known
                                      : "expert tensors found under several containers: " + known) +
                    "; name them with --experts");
  }
  map.container = std::string(matching.front());
  return found;
}

// The layers config.json declares against the layers the names hold.
void check_declared_layers(const Found& found, const ModelMap& map, const std::string& source,
                           core::ProblemList& problems) {
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

}  // namespace

ModelMap map_model(const json& config, const Catalog& catalog, const std::string& pattern,
                   const std::string& source) {
  ModelMap map;
  core::ProblemList problems(ErrorKind::kInput);
  Found found;
  if (!pattern.empty()) {
    found = map_pattern(config, catalog, pattern, source, map);
  } else {
    const MoeLayout layout = detect_moe_layers(config, source + "/config.json");
    map.model_type = detail::model_type_of(config, source + "/config.json");
    map.num_logical_experts = layout.num_logical_experts;
    map.model_layers = layout.moe_layers;
    map.num_hidden_layers = layout.num_hidden_layers;
    found = find_container(catalog, layout, source, map);
    check_declared_layers(found, map, source, problems);
  }
  if (map.num_logical_experts < 1) problems.add("'" + source + "': no expert found");
  problems.throw_if_any();
  check_and_fill(found, catalog, map, source, problems);
  problems.throw_if_any();
  return map;
}

}  // namespace eplb::hf
