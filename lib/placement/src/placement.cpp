// load_placement, to_json and check_compatible; parse_placement lives in parse.cpp.
#include "eplb/placement/placement.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "eplb/core/error.hpp"
#include "eplb/core/ids.hpp"
#include "eplb/core/input_file.hpp"

namespace eplb::placement {
namespace {

// Beyond this many missing experts in one layer the rest are counted, not listed: a wrong
// --old file would otherwise print a line for nearly every expert of every layer.
constexpr size_t kMaxMissingListedPerLayer = 20;

// "0,1,2, 3,4,5": slots of one rank together, ranks apart, so a layer reads by rank.
std::string format_layer(const std::vector<int32_t>& layer, int32_t num_slots_per_rank) {
  std::string out = "[";
  for (size_t slot_idx = 0; slot_idx < layer.size(); ++slot_idx) {
    if (slot_idx > 0) {
      const bool new_rank =
          num_slots_per_rank > 0 && slot_idx % static_cast<size_t>(num_slots_per_rank) == 0;
      out += new_rank ? ", " : ",";
    }
    out += nlohmann::json(layer[slot_idx]).dump();
  }
  return out + "]";
}

// The logical experts used by `new_layer` that no slot of `old_layer` holds, ascending.
std::vector<int32_t> missing_experts(const std::vector<int32_t>& old_layer,
                                     const std::vector<int32_t>& new_layer) {
  const auto max_id = [](const std::vector<int32_t>& layer) {
    return layer.empty() ? core::kEmptySlot : *std::max_element(layer.begin(), layer.end());
  };
  const size_t num_ids = static_cast<size_t>(std::max(max_id(old_layer), max_id(new_layer)) + 1);
  std::vector<char> held(num_ids, 0), reported(num_ids, 0);
  for (int32_t id : old_layer) {
    if (id >= 0) held[static_cast<size_t>(id)] = 1;
  }
  std::vector<int32_t> missing;
  for (int32_t id : new_layer) {
    const auto idx = static_cast<size_t>(id);
    if (id >= 0 && !held[idx] && !reported[idx]) {
      reported[idx] = 1;
      missing.push_back(id);
    }
  }
  std::sort(missing.begin(), missing.end());
  return missing;
}

// The logical experts `old_layer` holds that `new_layer` does not, ascending.
std::vector<int32_t> dropped_experts(const std::vector<int32_t>& old_layer,
                                     const std::vector<int32_t>& new_layer) {
  return missing_experts(new_layer, old_layer);
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < kMaxMissingListedPerLayer; ++i) {
    out += (i == 0 ? "" : ", ") + std::to_string(ids[i]);
  }
  if (ids.size() > kMaxMissingListedPerLayer) {
    out += fmt::format(" and {} more", ids.size() - kMaxMissingListedPerLayer);
  }
  return out;
}

}  // namespace

bool same_slots(const Placement& a, const Placement& b) {
  return a.ep_size == b.ep_size && a.num_slots_per_rank == b.num_slots_per_rank &&
         a.num_logical_experts == b.num_logical_experts &&
         a.physical_to_logical_map == b.physical_to_logical_map;
}

bool is_inline_json(const std::string& arg) {
  const size_t first = arg.find_first_not_of(" \t\r\n");
  return first != std::string::npos && (arg[first] == '{' || arg[first] == '[');
}

std::string argument_name(const std::string& arg, const std::string& option) {
  return is_inline_json(arg) ? option + " (inline JSON)" : arg;
}

Placement load_placement_argument(const std::string& arg, const std::string& option,
                                  ParseOptions options) {
  options.source_name = argument_name(arg, option);
  if (is_inline_json(arg)) return parse_placement(arg, options);
  return load_placement(arg, options);
}

Placement load_placement(const std::filesystem::path& path, ParseOptions options) {
  // Messages name the file unless the caller chose another name.
  if (options.source_name == ParseOptions{}.source_name) options.source_name = path.string();
  return parse_placement(core::read_input_file(path, "placement file"), options);
}

std::string to_json(const Placement& placement) {
  using nlohmann::json;
  // Every value through nlohmann's serializer; the layout (one line per layer) by hand.
  std::string out = "{\n";
  const auto field = [&out](const char* key, const json& value) {
    out += fmt::format("  {}: {},\n", json(key).dump(), value.dump());
  };
  field("format", "eplb-placement");
  field("version", 1);
  field("ep_size", placement.ep_size);
  field("num_slots_per_rank", placement.num_slots_per_rank);
  field("num_logical_experts", placement.num_logical_experts);
  if (!placement.model_layer_ids.empty()) field("model_layer_ids", placement.model_layer_ids);
  if (placement.num_hidden_layers > 0) field("num_hidden_layers", placement.num_hidden_layers);
  out += "  \"physical_to_logical_map\": [\n";
  const auto& layers = placement.physical_to_logical_map;
  for (size_t layer_idx = 0; layer_idx < layers.size(); ++layer_idx) {
    out += "    " + format_layer(layers[layer_idx], placement.num_slots_per_rank);
    out += layer_idx + 1 < layers.size() ? ",\n" : "\n";
  }
  return out + "  ]\n}\n";
}

std::vector<std::string> check_compatible(const Placement& old_placement,
                                          const Placement& new_placement,
                                          const std::string& old_name, const std::string& new_name,
                                          const CompatibleOptions& options) {
  std::vector<std::string> problems;
  if (old_placement.num_layers() != new_placement.num_layers()) {
    // A map with a row per hidden layer (SGLang's) is read as MoE rows only when the
    // model's layers are known: say how to give them.
    const bool numbering_known =
        !old_placement.model_layer_ids.empty() && !new_placement.model_layer_ids.empty();
    problems.push_back(fmt::format("'{}' has {} layers, but '{}' has {}{}", new_name,
                                   new_placement.num_layers(), old_name, old_placement.num_layers(),
                                   numbering_known
                                       ? ""
                                       : fmt::format(" (if one has a row per hidden layer, as "
                                                     "SGLang's map does, {})",
                                                     kModelLayersHint)));
  }
  if (old_placement.num_logical_experts != new_placement.num_logical_experts) {
    problems.push_back(fmt::format("'{}' has {} logical experts, but '{}' has {}", new_name,
                                   new_placement.num_logical_experts, old_name,
                                   old_placement.num_logical_experts));
  }
  // ep_size and slots per rank may differ: that is elastic EP (scale-up or scale-down).
  const int32_t num_common_layers =
      std::min(old_placement.num_layers(), new_placement.num_layers());
  for (int32_t layer_idx = 0; layer_idx < num_common_layers; ++layer_idx) {
    const auto& old_layer = old_placement.physical_to_logical_map[static_cast<size_t>(layer_idx)];
    const auto& new_layer = new_placement.physical_to_logical_map[static_cast<size_t>(layer_idx)];
    const auto missing = missing_experts(old_layer, new_layer);
    for (size_t i = 0; i < missing.size() && i < kMaxMissingListedPerLayer; ++i) {
      problems.push_back(fmt::format(
          "'{}' layer {}: logical expert {} is used in the new placement but held by no slot "
          "of the old placement ('{}')",
          new_name, layer_idx, missing[i], old_name));
    }
    if (missing.size() > kMaxMissingListedPerLayer) {
      problems.push_back(fmt::format("'{}': ... and {} more in layer {}", new_name,
                                     missing.size() - kMaxMissingListedPerLayer, layer_idx));
    }
    if (options.allow_dropping_experts) continue;
    const auto dropped = dropped_experts(old_layer, new_layer);
    if (!dropped.empty()) {
      problems.push_back(fmt::format(
          "'{}' layer {}: logical expert{} {} {} held by '{}' but by no slot of the new placement: "
          "{} weights would be lost (--allow-dropping-experts drops them)",
          new_name, layer_idx, dropped.size() == 1 ? "" : "s", join_ids(dropped),
          dropped.size() == 1 ? "is" : "are", old_name, dropped.size() == 1 ? "its" : "their"));
    }
  }
  return problems;
}

}  // namespace eplb::placement
