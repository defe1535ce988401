// parse_placement: text -> Placement, validating strictly.
//
// Detection (docs/PLACEMENT.md): text that is one JSON document is read by its keys; text
// whose first line alone is a JSON object is vLLM's JSONL; anything not starting like JSON
// ('{', '[', '"') is read as YAML (TensorRT-LLM). Each form's reader fills an Extracted,
// then finish() runs the checks every form shares. Validation never stops at the first
// problem: every check that can still run does, and all problems are thrown together.
// Texts are documented in docs/PLACEMENT.md; keep them in sync.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/ids.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/placement/placement.hpp"
#include "reader.hpp"

namespace eplb::placement {
namespace detail {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::pointer_to_key;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
// A broken map (e.g. all strings) would otherwise print one line per slot.
constexpr int kMaxProblemsPerLayer = 20;

Extracted extract_map_only(std::string form, const json& map, const std::string& map_pointer) {
  Extracted ex;
  ex.form = std::move(form);
  ex.map = map;
  set_array_pointers(ex, map_pointer);
  return ex;
}

bool has_any(const json& doc, std::initializer_list<const char*> keys) {
  return std::any_of(keys.begin(), keys.end(), [&](const char* key) { return doc.contains(key); });
}

// Tells the forms apart by their keys. An object with the keys of no form is not guessed
// at; an object close to the canonical form is read as it, so a typo there is reported.
Extracted extract_form(const json& doc, Reporter& report) {
  if (doc.is_array()) {
    Extracted ex = extract_map_only("bare array", doc, "");
    ex.rows_may_be_hidden_layers = true;
    return ex;
  }
  if (!doc.is_object()) {
    report.add("", unrecognised(fmt::format("found {}, not an object or an array", describe(doc))));
    return {};
  }
  if (doc.contains("record_type")) return extract_vllm_record(doc, report);
  if (has_any(doc, {"format", "version"})) return extract_canonical(doc, report);
  if (has_any(doc, {"moe_layer_count", "layer_list"})) return extract_vllm_ascend(doc, report);
  if (has_any(doc, {"num_moe_layers", "num_physical_experts"})) {
    return extract_vllm_state(doc, report);
  }
  if (has_any(doc, {"num_slots", "initial_global_assignments"})) return extract_trtllm(doc, report);
  if (doc.size() == 1 && doc.contains("physical_to_logical_map")) {
    Extracted ex =
        extract_map_only("SGLang", doc.at("physical_to_logical_map"), "/physical_to_logical_map");
    ex.rows_may_be_hidden_layers = true;
    return ex;
  }
  if (has_any(doc, {"physical_to_logical_map", "ep_size", "num_slots_per_rank",
                    "num_logical_experts", "model_layer_ids"})) {
    return extract_canonical(doc, report);
  }
  std::string keys;
  for (const auto& [key, value] : doc.items()) {
    keys += (keys.empty() ? "" : ", ") + json(key).dump();
  }
  report.add("", unrecognised(keys.empty() ? "an empty object" : "top-level keys: " + keys));
  return {};
}

Extracted extract(const json& doc, Reporter& report) {
  Extracted ex = extract_form(doc, report);
  ex.has_unknown_ep_size = doc.is_object() && doc.contains("ep_size") && !ex.gives_ep_size;
  return ex;
}

// ep_size comes from the file or the caller (--ep-size); both must agree.
std::optional<int64_t> resolve_ep_size(const Extracted& ex, const ParseOptions& options,
                                       Reporter& report) {
  if (ex.gives_ep_size) {
    if (ex.ep_size.value && options.ep_size && *options.ep_size != *ex.ep_size.value) {
      report.add(ex.ep_size.pointer,
                 fmt::format("{} {} disagrees with --ep-size {}", ex.ep_size.key, *ex.ep_size.value,
                             *options.ep_size));
      return std::nullopt;
    }
    return ex.ep_size.value;
  }
  if (!options.ep_size && options.fallback_ep_size) return *options.fallback_ep_size;
  if (!options.ep_size && ex.has_unknown_ep_size) return std::nullopt;  // reported already
  if (!options.ep_size) {
    report.add("", fmt::format("the {} form does not give ep_size: pass --ep-size", ex.form));
    return std::nullopt;
  }
  if (*options.ep_size <= 0) {
    report.add("", fmt::format("--ep-size must be positive, got {}", *options.ep_size));
    return std::nullopt;
  }
  return *options.ep_size;
}

// The expert count given by the file or else the caller; nullopt means "derive it".
std::optional<int64_t> given_num_logical_experts(const Extracted& ex, const ParseOptions& options,
                                                 Reporter& report) {
  const auto& expected = options.num_logical_experts;
  const auto& stated = ex.num_logical_experts;
  if (expected && *expected <= 0) {
    report.add("",
               fmt::format("the expected num_logical_experts must be positive, got {}", *expected));
    return stated.value;
  }
  if (stated.value && expected && *expected != *stated.value) {
    report.add(stated.pointer, fmt::format("{} {} disagrees with the expected {}", stated.key,
                                           *stated.value, *expected));
  }
  if (stated.value) return stated.value;
  return expected;
}

// Checks that the map is a non-empty array of equally long arrays. Returns the slot count
// per layer (that of the first layer with the most common length), or nullopt if unknown.
std::optional<int64_t> check_map_shape(const Extracted& ex, Reporter& report) {
  const json& map = *ex.map;
  if (!map.is_array()) {
    report.add(ex.map_pointer, fmt::format("expected an array of layers, got {}", describe(map)));
    return std::nullopt;
  }
  if (map.empty()) {
    report.add(ex.map_pointer, "no layers");
    return std::nullopt;
  }
  if (std::all_of(map.begin(), map.end(), [](const json& row) { return row.is_number(); })) {
    report.add(ex.map_pointer, "expected an array of layers (a 2-D array), got a 1-D array");
    return std::nullopt;
  }
  std::map<size_t, size_t> count_by_length;
  for (const json& row : map) {
    if (row.is_array()) ++count_by_length[row.size()];
  }
  size_t ref_idx = 0, ref_count = 0, ref_length = 0;
  for (size_t i = 0; i < map.size(); ++i) {
    const json& row = map[i];
    if (!row.is_array()) {
      report.add(ex.layer_pointer(i),
                 fmt::format("expected an array of logical expert ids, got {}", describe(row)));
    } else if (count_by_length[row.size()] > ref_count) {
      ref_idx = i;
      ref_count = count_by_length[row.size()];
      ref_length = row.size();
    }
  }
  if (ref_count == 0) return std::nullopt;
  if (ref_length == 0) report.add(ex.layer_pointer(ref_idx), "layer has no slots");
  for (size_t i = 0; i < map.size(); ++i) {
    if (map[i].is_array() && map[i].size() != ref_length) {
      report.add(ex.layer_pointer(i), fmt::format("layer {} has {} slots, but layer {} has {}", i,
                                                  map[i].size(), ref_idx, ref_length));
    }
  }
  if (ref_length == 0 || ref_count != map.size()) return std::nullopt;
  return static_cast<int64_t>(ref_length);
}

// The counts a file states about its own map must match the map.
void check_stated_shape(const Extracted& ex, std::optional<int64_t> slots_per_layer,
                        Reporter& report) {
  const auto& layers = ex.num_layers;
  if (layers.value && ex.map->is_array() && *layers.value != static_cast<int64_t>(ex.map->size())) {
    report.add(layers.pointer, fmt::format("{} {} disagrees with the {} layers given", layers.key,
                                           *layers.value, ex.map->size()));
  }
  const auto& slots = ex.num_slots_per_layer;
  if (slots.value && slots_per_layer && *slots.value != *slots_per_layer) {
    report.add(slots.pointer, fmt::format("{} {} disagrees with the {} slots of each layer",
                                          slots.key, *slots.value, *slots_per_layer));
  }
  if (!ex.model_layer_ids.empty() && ex.map->is_array() &&
      ex.model_layer_ids.size() != ex.map->size()) {
    report.add("/model_layer_ids", fmt::format("{} model layer ids for {} layers",
                                               ex.model_layer_ids.size(), ex.map->size()));
  }
}

// Checks row length == ep_size * num_slots_per_rank and returns num_slots_per_rank.
std::optional<int64_t> resolve_slots_per_rank(const Extracted& ex, std::optional<int64_t> ep_size,
                                              std::optional<int64_t> slots_per_layer,
                                              Reporter& report) {
  if (!ep_size || !slots_per_layer) return ex.num_slots_per_rank;
  if (ex.num_slots_per_rank) {
    const int64_t implied = *ex.num_slots_per_rank * *ep_size;
    if (implied != *slots_per_layer) {
      report.add("/num_slots_per_rank",
                 fmt::format("num_slots_per_rank {} times ep_size {} is {}, but layers have {} "
                             "slots",
                             *ex.num_slots_per_rank, *ep_size, implied, *slots_per_layer));
    }
    return ex.num_slots_per_rank;
  }
  if (*slots_per_layer % *ep_size != 0) {
    report.add(ex.map_pointer, fmt::format("{} slots per layer is not divisible by ep_size {}",
                                           *slots_per_layer, *ep_size));
    return std::nullopt;
  }
  return *slots_per_layer / *ep_size;
}

// The largest id that could be a logical expert id, or -1 if there is none (all empty).
int64_t max_plausible_id(const json& map) {
  int64_t max_id = -1;
  for (const json& row : map) {
    if (!row.is_array()) continue;
    for (const json& value : row) {
      const auto id = as_int(value);
      if (id && *id < kInt32Max) max_id = std::max(max_id, *id);
    }
  }
  return max_id;
}

// True when every slot is -1, the one case where a missing expert count cannot be derived
// (other ids make max + 1 positive; non-integers are reported on their own).
bool all_slots_empty(const json& map) {
  return std::all_of(map.begin(), map.end(), [](const json& row) {
    return std::all_of(row.begin(), row.end(),
                       [](const json& value) { return as_int(value) == core::kEmptySlot; });
  });
}

// Converts one layer, reporting every slot that is not an id in [-1, num_logical_experts).
std::vector<int32_t> read_layer(const Extracted& ex, size_t layer_idx, int64_t num_logical_experts,
                                Reporter& report) {
  const json& row = (*ex.map)[layer_idx];
  std::vector<int32_t> ids(row.size(), core::kEmptySlot);
  int num_problems = 0;
  auto add = [&](size_t slot_idx, const std::string& text) {
    if (++num_problems <= kMaxProblemsPerLayer)
      report.add(ex.slot_pointer(layer_idx, slot_idx), text);
  };
  for (size_t slot_idx = 0; slot_idx < row.size(); ++slot_idx) {
    const auto id = as_int(row[slot_idx]);
    if (!id) {
      add(slot_idx, fmt::format("expected an integer, got {}", describe(row[slot_idx])));
    } else if (*id < core::kEmptySlot || *id >= num_logical_experts) {
      add(slot_idx,
          fmt::format("logical expert id {} is out of range [-1, {})", *id, num_logical_experts));
    } else {
      ids[slot_idx] = static_cast<int32_t>(*id);
    }
  }
  if (num_problems > kMaxProblemsPerLayer) {
    report.add(ex.layer_pointer(layer_idx),
               fmt::format("... and {} more problems in layer {}",
                           num_problems - kMaxProblemsPerLayer, layer_idx));
  }
  return ids;
}

// The first line that is not blank, and whether more non-blank text follows it.
std::pair<std::string, bool> first_line(const std::string& text) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string::npos) {
      const bool more = text.find_first_not_of(" \t\r\n", end) != std::string::npos;
      return {line, more};
    }
    start = end + 1;
  }
  return {"", false};
}

bool looks_like_json(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  return first == std::string::npos ||
         std::string_view("{[\"").find(text[first]) != std::string_view::npos;
}

}  // namespace

void set_array_pointers(Extracted& ex, const std::string& map_pointer) {
  ex.map_pointer = map_pointer;
  ex.layer_pointer = [map_pointer](size_t layer_idx) {
    return fmt::format("{}/{}", map_pointer, layer_idx);
  };
  ex.slot_pointer = [map_pointer](size_t layer_idx, size_t slot_idx) {
    return fmt::format("{}/{}/{}", map_pointer, layer_idx, slot_idx);
  };
}

std::optional<int64_t> read_count(const json& object, const std::string& key,
                                  const std::string& pointer, Reporter& report) {
  const json& value = object.at(key);
  const auto number = as_int(value);
  if (!number) {
    report.add(pointer, fmt::format("expected an integer, got {}", describe(value)));
  } else if (*number <= 0) {
    report.add(pointer, fmt::format("{} must be positive, got {}", key, *number));
  } else if (*number > kInt32Max) {
    report.add(pointer, fmt::format("{} {} is too large (at most {})", key, *number, kInt32Max));
  } else {
    return number;
  }
  return std::nullopt;
}

void report_unknown_keys(const json& object, const std::set<std::string>& known,
                         const std::string& pointer, Reporter& report) {
  for (const auto& [key, value] : object.items()) {
    if (!known.contains(key)) {
      report.add(pointer + pointer_to_key(key), fmt::format("unknown key \"{}\"", key));
    }
  }
}

std::string unrecognised(const std::string& found) {
  return fmt::format(
      "not a placement in any accepted form ({}); accepted forms: canonical {{\"format\": "
      "\"eplb-placement\", ...}}, SGLang {{\"physical_to_logical_map\"}}, a bare 2-D array, "
      "vLLM EPLB state {{\"num_moe_layers\", \"num_logical_experts\", \"num_physical_experts\", "
      "\"physical_to_logical_map\"}}, vLLM JSONL {{\"record_type\": \"eplb_initial_mapping\", "
      "...}} per line, vllm-ascend {{\"moe_layer_count\", \"layer_list\"}}, TensorRT-LLM YAML "
      "{{num_slots, initial_global_assignments}} (see docs/PLACEMENT.md)",
      found);
}

Placement finish(const Extracted& ex, const ParseOptions& options, Reporter& report) {
  const auto ep_size =
      ex.map || ex.gives_ep_size ? resolve_ep_size(ex, options, report) : std::nullopt;
  auto num_logical_experts = given_num_logical_experts(ex, options, report);
  if (!ex.map) {
    report.throw_if_any();
    EPLB_ASSERT(ex.map);  // every path without a map reports a problem
  }
  const json& map = *ex.map;
  const auto slots_per_layer = check_map_shape(ex, report);
  check_stated_shape(ex, slots_per_layer, report);
  const auto slots_per_rank = resolve_slots_per_rank(ex, ep_size, slots_per_layer, report);

  if (!num_logical_experts && map.is_array()) {
    num_logical_experts = max_plausible_id(map) + 1;
    if (*num_logical_experts == 0 && slots_per_layer && all_slots_empty(map)) {
      report.add(
          ex.map_pointer,
          "every slot is empty (-1), so num_logical_experts cannot be derived: give it explicitly");
    }
  }
  Placement placement;
  if (map.is_array()) {
    for (size_t layer_idx = 0; layer_idx < map.size(); ++layer_idx) {
      if (!map[layer_idx].is_array()) continue;
      placement.physical_to_logical_map.push_back(
          read_layer(ex, layer_idx, num_logical_experts.value_or(0), report));
    }
  }
  if (map.is_array() && placement.physical_to_logical_map.size() == map.size()) {
    apply_model_layers(ex, options, placement, report);
  }
  report.throw_if_any();
  EPLB_ASSERT(ep_size && slots_per_rank && num_logical_experts);
  placement.ep_size = static_cast<int32_t>(*ep_size);
  placement.num_slots_per_rank = static_cast<int32_t>(*slots_per_rank);
  placement.num_logical_experts = static_cast<int32_t>(*num_logical_experts);
  return placement;
}

}  // namespace detail

Placement parse_placement(const std::string& text, const ParseOptions& options) {
  using namespace detail;
  Reporter report(options.source_name);
  json doc;
  if (json::accept(text)) {
    doc = core::json::parse_document(text, report);
  } else if (const auto [line, more] = first_line(text);
             more && line.find_first_not_of(" \t") != std::string::npos &&
             line[line.find_first_not_of(" \t")] == '{' && json::accept(line)) {
    return parse_jsonl(text, options);
  } else if (looks_like_json(text)) {
    doc = core::json::parse_document(text, report);  // throws: malformed JSON
  } else {
    doc = yaml_to_json(text, report);
  }
  const Extracted ex = extract(unwrap_trtllm_options(doc, report), report);
  return finish(ex, options, report);
}

}  // namespace eplb::placement
