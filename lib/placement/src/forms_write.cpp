// Writers of the engine forms (eplb/placement/forms.hpp). Layout: one line per layer (or
// per device), so that a placement of DeepSeek-V3 size stays readable and diffable; every
// value goes through nlohmann's serializer or yaml-cpp's emitter.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "eplb/core/error.hpp"
#include "eplb/placement/forms.hpp"

namespace eplb::placement {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr std::array<std::pair<WriteForm, std::string_view>, 6> kNames = {{
    {WriteForm::kCanonical, "canonical"},
    {WriteForm::kSglang, "sglang"},
    {WriteForm::kVllmState, "vllm"},
    {WriteForm::kVllmJsonl, "vllm-jsonl"},
    {WriteForm::kVllmAscend, "vllm-ascend"},
    {WriteForm::kTrtllm, "trtllm"},
}};

constexpr size_t kMaxEmptyListed = 20;

// Objects one key per line and arrays of containers one element per line, down to
// `depth`; below it every value on one line (nlohmann's compact dump).
std::string dump(const ordered_json& value, int depth, const std::string& indent = "") {
  const std::string inner = indent + "  ";
  if (depth <= 0 || (!value.is_object() && !value.is_array()) || value.empty()) {
    return value.dump();
  }
  std::string out = value.is_object() ? "{\n" : "[\n";
  size_t i = 0;
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      out += inner + ordered_json(key).dump() + ": " + dump(child, depth - 1, inner);
      out += ++i < value.size() ? ",\n" : "\n";
    }
  } else {
    for (const auto& child : value) {
      out += inner + dump(child, depth - 1, inner);
      out += ++i < value.size() ? ",\n" : "\n";
    }
  }
  return out + indent + (value.is_object() ? "}" : "]");
}

// vLLM's JSONL keys its layers by MoE layer: "0", "1", ...
ordered_json keyed_moe_layers(const Placement& p) {
  ordered_json layers = ordered_json::object();
  for (size_t i = 0; i < p.physical_to_logical_map.size(); ++i) {
    layers[std::to_string(i)] = p.physical_to_logical_map[i];
  }
  return layers;
}

// SGLang's map: a row per hidden layer. Dense layers get the row SGLang's own trivial
// placement gives every layer (ExpertLocationMetadata.init_trivial: slot p holds expert
// p % num_logical_experts); SGLang never routes a token through them.
std::string write_sglang(const Placement& p) {
  const int32_t num_hidden =
      std::max(p.num_hidden_layers, p.model_layer_ids.empty() ? 0 : p.model_layer_ids.back() + 1);
  std::vector<int32_t> dense(static_cast<size_t>(p.num_slots()));
  for (size_t slot = 0; slot < dense.size(); ++slot) {
    dense[slot] = static_cast<int32_t>(slot) % std::max(p.num_logical_experts, 1);
  }
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(num_hidden), dense);
  for (size_t i = 0; i < p.model_layer_ids.size(); ++i) {
    rows[static_cast<size_t>(p.model_layer_ids[i])] = p.physical_to_logical_map[i];
  }
  return dump(ordered_json{{"physical_to_logical_map", rows}}, 2) + "\n";
}

std::string write_vllm_state(const Placement& p) {
  ordered_json doc = {{"num_moe_layers", p.num_layers()},
                      {"num_logical_experts", p.num_logical_experts},
                      {"num_physical_experts", p.num_slots()},
                      {"physical_to_logical_map", p.physical_to_logical_map}};
  return dump(doc, 2) + "\n";
}

std::string write_vllm_jsonl(const Placement& p) {
  ordered_json record = {{"record_type", "eplb_initial_mapping"}, {"version", 1}};
  // vLLM's slots = logical experts + redundant ones; with fewer slots than experts the
  // count cannot be said this way and is left to be derived.
  if (p.num_slots() >= p.num_logical_experts) {
    record["num_redundant_experts"] = p.num_slots() - p.num_logical_experts;
  }
  record["num_slots"] = p.num_slots();
  record["initial_global_assignments"] = keyed_moe_layers(p);
  return record.dump() + "\n";
}

std::string write_vllm_ascend(const Placement& p) {
  ordered_json layers = ordered_json::array();
  const auto per_rank = static_cast<size_t>(p.num_slots_per_rank);
  for (size_t i = 0; i < p.physical_to_logical_map.size(); ++i) {
    ordered_json devices = ordered_json::array();
    const auto& row = p.physical_to_logical_map[i];
    for (size_t rank = 0; rank < static_cast<size_t>(p.ep_size); ++rank) {
      const auto first = row.begin() + static_cast<std::ptrdiff_t>(rank * per_rank);
      devices.push_back(
          {{"device_id", rank},
           {"device_expert",
            std::vector<int32_t>(first, first + static_cast<std::ptrdiff_t>(per_rank))}});
    }
    layers.push_back({{"layer_id", i}, {"device_count", p.ep_size}, {"device_list", devices}});
  }
  ordered_json doc = {{"moe_layer_count", p.num_layers()}, {"layer_list", layers}};
  return dump(doc, 5) + "\n";
}

std::string write_trtllm(const Placement& p) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "num_slots" << YAML::Value << p.num_slots();
  out << YAML::Key << "initial_global_assignments" << YAML::Value << YAML::BeginMap;
  for (size_t i = 0; i < p.physical_to_logical_map.size(); ++i) {
    out << YAML::Key << p.model_layer_ids[i] << YAML::Value << YAML::Flow
        << p.physical_to_logical_map[i];
  }
  out << YAML::EndMap;
  // A placement file is static: the balancer must not move experts at run time.
  out << YAML::Key << "layer_updates_per_iter" << YAML::Value << 0;
  out << YAML::EndMap;
  EPLB_ASSERT(out.good());
  return std::string(out.c_str()) + "\n";
}

// What the form needs that the placement lacks: the model's layer numbers, or a way to say
// "empty". Throws core::Error(kInput) listing every such problem.
void check_writable(const Placement& p, WriteForm form, const WriteOptions& options,
                    std::string_view source) {
  core::ProblemList problems(core::ErrorKind::kInput);
  if ((form == WriteForm::kSglang || form == WriteForm::kTrtllm) && p.model_layer_ids.empty()) {
    problems.add(
        fmt::format("'{}' does not record the model's layer numbers, and the {} form {}: {}",
                    source, form_name(form),
                    form == WriteForm::kSglang ? "has a row per hidden layer, dense layers included"
                                               : "keys layers by the model's layer number",
                    kModelLayersHint));
  }
  if (!can_express_empty(form) && options.fill_empty == FillEmpty::kRefuse) {
    size_t num_empty = 0;
    for (size_t layer = 0; layer < p.physical_to_logical_map.size(); ++layer) {
      const auto& row = p.physical_to_logical_map[layer];
      for (size_t slot = 0; slot < row.size(); ++slot) {
        if (row[slot] >= 0 || ++num_empty > kMaxEmptyListed) continue;
        const auto per_rank = static_cast<size_t>(std::max(p.num_slots_per_rank, 1));
        problems.add(fmt::format(
            "'{}' layer {}{}, slot {} (EP rank {}, row {}) is empty (-1), which the {} form "
            "cannot express{}: pass --fill-empty least-replicated to give it a replica",
            source, layer,
            p.model_layer_ids.empty() ? ""
                                      : fmt::format(" (model layer {})", p.model_layer_ids[layer]),
            slot, slot / per_rank, slot % per_rank, form_name(form),
            form == WriteForm::kSglang ? " (SGLang would take -1 for its last expert)" : ""));
      }
    }
    if (num_empty > kMaxEmptyListed) {
      problems.add(
          fmt::format("'{}': ... and {} more empty slots", source, num_empty - kMaxEmptyListed));
    }
  }
  problems.throw_if_any();
}

}  // namespace

std::string_view form_name(WriteForm form) {
  for (const auto& [f, name] : kNames) {
    if (f == form) return name;
  }
  return "?";
}

std::optional<WriteForm> form_from_name(std::string_view name) {
  for (const auto& [f, n] : kNames) {
    if (n == name) return f;
  }
  return std::nullopt;
}

std::vector<std::string> form_names() {
  std::vector<std::string> names;
  for (const auto& [f, name] : kNames) names.emplace_back(name);
  return names;
}

bool can_express_empty(WriteForm form) {
  return form == WriteForm::kCanonical || form == WriteForm::kVllmState;
}

std::optional<FillEmpty> fill_empty_from_name(std::string_view name) {
  if (name == "least-replicated") return FillEmpty::kLeastReplicated;
  return std::nullopt;
}

Placement fill_empty_slots(const Placement& placement) {
  Placement out = placement;
  const auto num_experts = static_cast<size_t>(placement.num_logical_experts);
  for (auto& row : out.physical_to_logical_map) {
    std::vector<int32_t> count(num_experts, 0);
    for (int32_t id : row) {
      if (id >= 0) ++count[static_cast<size_t>(id)];
    }
    for (int32_t& id : row) {
      if (id >= 0 || num_experts == 0) continue;
      id = static_cast<int32_t>(std::min_element(count.begin(), count.end()) - count.begin());
      ++count[static_cast<size_t>(id)];
    }
  }
  return out;
}

std::string write_placement(const Placement& input, WriteForm form, const WriteOptions& options,
                            std::string_view source) {
  check_writable(input, form, options, source);
  const Placement placement = can_express_empty(form) || options.fill_empty == FillEmpty::kRefuse
                                  ? input
                                  : fill_empty_slots(input);
  switch (form) {
    case WriteForm::kCanonical:
      return to_json(placement);
    case WriteForm::kSglang:
      return write_sglang(placement);
    case WriteForm::kVllmState:
      return write_vllm_state(placement);
    case WriteForm::kVllmJsonl:
      return write_vllm_jsonl(placement);
    case WriteForm::kVllmAscend:
      return write_vllm_ascend(placement);
    case WriteForm::kTrtllm:
      return write_trtllm(placement);
  }
  EPLB_ASSERT(false && "unknown WriteForm");
  return {};
}

std::vector<std::string> lost_in(const Placement& placement, WriteForm form) {
  std::vector<std::string> lost;
  const bool keeps_ep_size = form == WriteForm::kCanonical || form == WriteForm::kVllmAscend;
  const bool keeps_layer_ids = form == WriteForm::kCanonical || form == WriteForm::kTrtllm;
  const bool keeps_count = form == WriteForm::kCanonical || form == WriteForm::kVllmState ||
                           form == WriteForm::kVllmJsonl;
  if (!keeps_ep_size) {
    lost.push_back(
        fmt::format("the {} form does not record ep_size {}: give --ep-size {} when "
                    "reading it",
                    form_name(form), placement.ep_size, placement.ep_size));
  }
  if (!keeps_layer_ids && !placement.model_layer_ids.empty()) {
    lost.push_back(fmt::format(
        "the {} form {} the model's MoE layers: give --model-layers {} when reading it",
        form_name(form), form == WriteForm::kSglang ? "does not say which rows are" : "counts",
        format_layer_spec(placement.model_layer_ids)));
  }
  int32_t max_id = -1;
  for (const auto& row : placement.physical_to_logical_map) {
    for (int32_t id : row) max_id = std::max(max_id, id);
  }
  if (!keeps_count && max_id + 1 != placement.num_logical_experts) {
    lost.push_back(
        fmt::format("the {} form does not record num_logical_experts {}: read back, "
                    "it is derived as {} unless the old placement gives it",
                    form_name(form), placement.num_logical_experts, max_id + 1));
  }
  return lost;
}

}  // namespace eplb::placement
