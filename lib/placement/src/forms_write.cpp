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

int32_t layer_number(const Placement& p, size_t layer_idx) {
  return p.model_layer_ids.empty() ? static_cast<int32_t>(layer_idx) : p.model_layer_ids[layer_idx];
}

ordered_json keyed_layers(const Placement& p) {
  ordered_json layers = ordered_json::object();
  for (size_t i = 0; i < p.physical_to_logical_map.size(); ++i) {
    layers[std::to_string(layer_number(p, i))] = p.physical_to_logical_map[i];
  }
  return layers;
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
  record["initial_global_assignments"] = keyed_layers(p);
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
    layers.push_back(
        {{"layer_id", layer_number(p, i)}, {"device_count", p.ep_size}, {"device_list", devices}});
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
    out << YAML::Key << layer_number(p, i) << YAML::Value << YAML::Flow
        << p.physical_to_logical_map[i];
  }
  out << YAML::EndMap;
  // A placement file is static: the balancer must not move experts at run time.
  out << YAML::Key << "layer_updates_per_iter" << YAML::Value << 0;
  out << YAML::EndMap;
  EPLB_ASSERT(out.good());
  return std::string(out.c_str()) + "\n";
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

std::string write_placement(const Placement& placement, WriteForm form) {
  switch (form) {
    case WriteForm::kCanonical:
      return to_json(placement);
    case WriteForm::kSglang:
      return dump(ordered_json{{"physical_to_logical_map", placement.physical_to_logical_map}}, 2) +
             "\n";
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
  const bool keeps_layer_ids = form == WriteForm::kCanonical || form == WriteForm::kVllmJsonl ||
                               form == WriteForm::kVllmAscend || form == WriteForm::kTrtllm;
  const bool keeps_count = form == WriteForm::kCanonical || form == WriteForm::kVllmState ||
                           form == WriteForm::kVllmJsonl;
  if (!keeps_ep_size) {
    lost.push_back(
        fmt::format("the {} form does not record ep_size {}: give --ep-size {} when "
                    "reading it",
                    form_name(form), placement.ep_size, placement.ep_size));
  }
  if (!keeps_layer_ids && !placement.model_layer_ids.empty()) {
    lost.push_back(fmt::format("the {} form does not record the model layer numbers ({}, ...)",
                               form_name(form), placement.model_layer_ids[0]));
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
