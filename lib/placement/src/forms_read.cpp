// Readers of the engines' placement forms: vLLM's EPLB state and JSONL mapping records,
// vllm-ascend's expert map and TensorRT-LLM's moe_load_balancer.yaml. Each reports the
// problems of its own keys and hands the map to the shared checks (parse.cpp).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "reader.hpp"

namespace eplb::placement::detail {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::pointer_to_key;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

StatedCount stated(const json& doc, const std::string& key, const std::string& pointer,
                   Reporter& report) {
  StatedCount count{std::nullopt, key, pointer};
  if (doc.contains(key)) count.value = read_count(doc, key, pointer, report);
  return count;
}

void require(const json& doc, std::initializer_list<const char*> keys, const std::string& pointer,
             Reporter& report) {
  for (const char* key : keys) {
    if (!doc.contains(key)) {
      report.add(pointer, fmt::format("missing required key \"{}\"", key));
    }
  }
}

// A canonical decimal layer number ("3", not "03" or "+3"), or nullopt.
std::optional<int64_t> layer_number(const std::string& key) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return std::nullopt;
  if (!std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int64_t number = std::stoll(key);
  if (number > kInt32Max) return std::nullopt;
  return number;
}

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). JSON text is checked by its parser; YAML strings are not, and nlohmann's
// serializer, which writes our messages, throws on anything else.
bool valid_utf8(const std::string& text) {
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t len = 1;
    uint32_t code = lead;
    if (lead >= 0x80) {
      if ((lead & 0xE0) == 0xC0) {
        len = 2;
      } else if ((lead & 0xF0) == 0xE0) {
        len = 3;
      } else if ((lead & 0xF8) == 0xF0) {
        len = 4;
      } else {
        return false;
      }
      if (len > text.size() - i) return false;
      code = lead & (0x7Fu >> len);
      for (size_t k = 1; k < len; ++k) {
        const auto next = static_cast<unsigned char>(text[i + k]);
        if ((next & 0xC0) != 0x80) return false;
        code = (code << 6) | (next & 0x3Fu);
      }
      if (code < kMin[len] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    }
    i += len;
  }
  return true;
}

// YAML scalars: plain ones read as the JSON value they spell, quoted ones stay strings.
json yaml_scalar(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() != "?") return text;  // quoted ("!") or explicitly tagged: a string
  if (text == "null" || text == "~" || text.empty()) return nullptr;
  if (text == "true") return true;
  if (text == "false") return false;
  try {
    size_t used = 0;
    const long long number = std::stoll(text, &used, 10);
    if (used == text.size()) return static_cast<int64_t>(number);
  } catch (const std::exception&) {
  }
  try {
    size_t used = 0;
    const double number = std::stod(text, &used);
    if (used == text.size()) return number;
  } catch (const std::exception&) {
  }
  return text;
}

// `budget`: nodes left to convert. Aliases (*a) make a YAML document a graph whose
// expansion can grow exponentially with its size ("billion laughs"); a document without
// them has fewer nodes than twice its bytes, so only aliases exhaust a budget of that.
json yaml_node(const YAML::Node& node, const std::string& pointer, Reporter& report,
               size_t& budget) {
  if (budget == 0) {
    report.add("",
               "YAML aliases (*name) expand beyond what a file of this size holds written out: "
               "write the placement without aliases");
    report.throw_if_any();
  }
  --budget;
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        out.push_back(yaml_node(node[i], fmt::format("{}/{}", pointer, i), report, budget));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& item : node) {
        const std::string key = item.first.IsScalar() ? item.first.Scalar() : "";
        if (!item.first.IsScalar()) {
          report.add(pointer, "a key that is not a scalar");
          continue;
        }
        if (!valid_utf8(key)) {
          report.add(pointer, "a key that is not valid UTF-8");
          continue;
        }
        if (out.contains(key)) {
          report.add(pointer, fmt::format("duplicate key \"{}\"", key));
          continue;
        }
        out[key] = yaml_node(item.second, pointer + pointer_to_key(key), report, budget);
      }
      return out;
    }
    case YAML::NodeType::Scalar:
      if (!valid_utf8(node.Scalar())) {
        report.add(pointer, "a string that is not valid UTF-8");
        return nullptr;
      }
      return yaml_scalar(node);
    default:
      return nullptr;
  }
}

}  // namespace

json yaml_to_json(const std::string& text, Reporter& report) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& error) {
    report.add("", fmt::format("malformed YAML at line {}, column {}: {}", error.mark.line + 1,
                               error.mark.column + 1, error.msg));
    report.throw_if_any();
  }
  size_t budget = 2 * text.size() + 16;
  return yaml_node(root, "", report, budget);
}

void read_keyed_layers(const json& object, const std::string& pointer, Extracted& ex,
                       Reporter& report) {
  if (!object.is_object()) {
    report.add(pointer,
               fmt::format("expected an object keyed by layer number, got {}", describe(object)));
    return;
  }
  std::map<int64_t, std::string> keys;  // number -> key as written
  bool keys_ok = true;
  for (const auto& [key, value] : object.items()) {
    const auto number = layer_number(key);
    if (!number) {
      report.add(
          pointer + pointer_to_key(key),
          fmt::format("layer key \"{}\" is not a layer number (a non-negative integer)", key));
      keys_ok = false;
    } else {
      keys.emplace(*number, key);
    }
  }
  json map = json::array();
  std::vector<std::string> layer_keys;
  for (const auto& [number, key] : keys) {
    map.push_back(object.at(key));
    layer_keys.push_back(key);
    ex.model_layer_ids.push_back(static_cast<int32_t>(number));
  }
  if (!keys_ok) ex.model_layer_ids.clear();
  ex.map = std::move(map);
  ex.map_pointer = pointer;
  ex.layer_pointer = [pointer, layer_keys](size_t layer_idx) {
    return pointer + pointer_to_key(layer_keys.at(layer_idx));
  };
  ex.slot_pointer = [pointer, layer_keys](size_t layer_idx, size_t slot_idx) {
    return fmt::format("{}{}/{}", pointer, pointer_to_key(layer_keys.at(layer_idx)), slot_idx);
  };
}

// vLLM's JSONL: one record per line; the eplb_initial_mapping record is the placement, other
// records (load statistics written to the same file) are skipped. Lines are named
// "<file>:<line>" in messages.
Placement parse_jsonl(const std::string& text, const ParseOptions& options) {
  core::ProblemList problems(core::ErrorKind::kInput);
  std::vector<std::pair<size_t, json>> records;  // line number, record
  size_t line_no = 0, start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Reporter report(fmt::format("{}:{}", options.source_name, line_no));
    try {
      json record = core::json::parse_document(line, report);
      problems.append(report.problems());
      if (!record.is_object()) {
        problems.add(fmt::format("'{}': expected a JSON object (one record per line), got {}",
                                 report.source(), describe(record)));
      } else if (record.value("record_type", json()) == "eplb_initial_mapping") {
        records.emplace_back(line_no, std::move(record));
      }
    } catch (const core::Error& error) {
      for (const auto& problem : error.problems()) problems.add(problem);
    }
  }
  if (records.size() != 1 && problems.empty()) {
    std::string lines;
    for (const auto& [number, record] : records) lines += fmt::format(" {}", number);
    problems.add(records.empty()
                     ? fmt::format("'{}': no record with \"record_type\": \"eplb_initial_mapping\"",
                                   options.source_name)
                     : fmt::format("'{}': {} eplb_initial_mapping records (lines{}); expected one",
                                   options.source_name, records.size(), lines));
  }
  problems.throw_if_any();
  Reporter report(fmt::format("{}:{}", options.source_name, records[0].first));
  const Extracted ex = extract_vllm_record(records[0].second, report);
  return finish(ex, options, report);
}

// vLLM's EplbState file (tools/eplb/benchmark_rearrange.py reads it).
Extracted extract_vllm_state(const json& doc, Reporter& report) {
  report_unknown_keys(
      doc,
      {"num_moe_layers", "num_logical_experts", "num_physical_experts", "physical_to_logical_map"},
      "", report);
  require(
      doc,
      {"num_moe_layers", "num_logical_experts", "num_physical_experts", "physical_to_logical_map"},
      "", report);
  Extracted ex;
  ex.form = "vLLM EPLB state";
  ex.num_layers = stated(doc, "num_moe_layers", "/num_moe_layers", report);
  ex.num_logical_experts = stated(doc, "num_logical_experts", "/num_logical_experts", report);
  ex.num_slots_per_layer = stated(doc, "num_physical_experts", "/num_physical_experts", report);
  set_array_pointers(ex, "/physical_to_logical_map");
  if (doc.contains("physical_to_logical_map")) ex.map = doc.at("physical_to_logical_map");
  return ex;
}

// One record of vLLM's JSONL mapping file (tools/eplb/generate_static_mapping.py writes it):
// {"record_type": "eplb_initial_mapping", "version": 1, "num_redundant_experts": R,
//  "num_slots": S, "initial_global_assignments": {"0": [...S ids], ...}}.
Extracted extract_vllm_record(const json& doc, Reporter& report) {
  report_unknown_keys(doc,
                      {"record_type", "version", "num_redundant_experts", "num_slots",
                       "initial_global_assignments"},
                      "", report);
  require(doc, {"version", "num_slots", "initial_global_assignments"}, "", report);
  Extracted ex;
  ex.form = "vLLM JSONL";
  if (doc.at("record_type") != "eplb_initial_mapping") {
    report.add("/record_type", fmt::format("unknown record type {} (expected "
                                           "\"eplb_initial_mapping\")",
                                           doc.at("record_type").dump()));
  }
  if (doc.contains("version") && as_int(doc.at("version")) != 1) {
    report.add("/version", fmt::format("unsupported version {} (this build reads version 1)",
                                       doc.at("version").dump()));
  }
  ex.num_slots_per_layer = stated(doc, "num_slots", "/num_slots", report);
  if (doc.contains("num_redundant_experts")) {
    const auto redundant = as_int(doc.at("num_redundant_experts"));
    if (!redundant || *redundant < 0) {
      report.add("/num_redundant_experts", fmt::format("expected a non-negative integer, got {}",
                                                       describe(doc.at("num_redundant_experts"))));
    } else if (ex.num_slots_per_layer.value) {
      // vLLM's own definition: slots = logical experts + redundant ones.
      const int64_t logical = *ex.num_slots_per_layer.value - *redundant;
      if (logical <= 0) {
        report.add("/num_redundant_experts",
                   fmt::format("num_redundant_experts {} leaves no logical experts of {} slots",
                               *redundant, *ex.num_slots_per_layer.value));
      } else {
        ex.num_logical_experts = {logical, "num_slots - num_redundant_experts",
                                  "/num_redundant_experts"};
      }
    }
  }
  set_array_pointers(ex, "/initial_global_assignments");
  if (doc.contains("initial_global_assignments")) {
    read_keyed_layers(doc.at("initial_global_assignments"), "/initial_global_assignments", ex,
                      report);
  }
  return ex;
}

namespace {

// One layer of a vllm-ascend map: its devices' ids concatenated in device order, every
// problem located at its device. `starts` gets each device's first slot.
json read_ascend_layer(const json& layer, size_t i, Extracted& ex, std::vector<size_t>& starts,
                       bool& ids_ok, Reporter& report) {
  const std::string lp = fmt::format("/layer_list/{}", i);
  json row = json::array();
  if (!layer.is_object()) {
    report.add(lp, fmt::format("expected a layer object, got {}", describe(layer)));
    return row;
  }
  report_unknown_keys(layer, {"layer_id", "device_count", "device_list"}, lp, report);
  require(layer, {"device_count", "device_list"}, lp, report);
  if (layer.contains("layer_id")) {
    const auto id = as_int(layer.at("layer_id"));
    if (!id || *id < 0 || *id > kInt32Max) {
      report.add(lp + "/layer_id", fmt::format("expected a non-negative integer, got {}",
                                               describe(layer.at("layer_id"))));
      ids_ok = false;
    } else {
      ex.model_layer_ids.push_back(static_cast<int32_t>(*id));
    }
  } else {
    ids_ok = false;
  }
  std::optional<int64_t> device_count;
  if (layer.contains("device_count")) {
    device_count = read_count(layer, "device_count", lp + "/device_count", report);
    if (i == 0) ex.ep_size.value = device_count;
    if (i > 0 && device_count && ex.ep_size.value && *device_count != *ex.ep_size.value) {
      report.add(lp + "/device_count", fmt::format("device_count {} differs from layer 0's {}",
                                                   *device_count, *ex.ep_size.value));
    }
  }
  if (!layer.contains("device_list")) {
    return row;
  }
  const json& devices = layer.at("device_list");
  if (!devices.is_array()) {
    report.add(lp + "/device_list",
               fmt::format("expected an array of devices, got {}", describe(devices)));
    return row;
  }
  if (device_count && static_cast<int64_t>(devices.size()) != *device_count) {
    report.add(lp + "/device_list", fmt::format("{} devices listed, but device_count is {}",
                                                devices.size(), *device_count));
  }
  for (size_t d = 0; d < devices.size(); ++d) {
    const std::string dp = fmt::format("{}/device_list/{}", lp, d);
    const json& device = devices[d];
    starts.push_back(row.size());
    if (!device.is_object() || !device.contains("device_expert")) {
      report.add(dp, device.is_object()
                         ? "missing required key \"device_expert\""
                         : fmt::format("expected a device object, got {}", describe(device)));
      continue;
    }
    report_unknown_keys(device, {"device_id", "device_expert"}, dp, report);
    if (device.contains("device_id") && as_int(device.at("device_id")) != static_cast<int64_t>(d)) {
      report.add(dp + "/device_id", fmt::format("device_id {} is not the device's position {}",
                                                device.at("device_id").dump(), d));
    }
    const json& experts = device.at("device_expert");
    if (!experts.is_array()) {
      report.add(dp + "/device_expert",
                 fmt::format("expected an array of logical expert ids, got {}", describe(experts)));
      continue;
    }
    const size_t first_size = devices[0].is_object() && devices[0].contains("device_expert") &&
                                      devices[0].at("device_expert").is_array()
                                  ? devices[0].at("device_expert").size()
                                  : experts.size();
    if (experts.size() != first_size) {
      report.add(dp + "/device_expert",
                 fmt::format("device {} has {} experts, but device 0 has {} (every device "
                             "needs the same number of slots)",
                             d, experts.size(), first_size));
    }
    for (const json& id : experts) row.push_back(id);
  }
  return row;
}

}  // namespace

// vllm-ascend's expert map: {"moe_layer_count": N, "layer_list": [{"layer_id": i,
// "device_count": D, "device_list": [{"device_id": d, "device_expert": [ids]}]}]}.
Extracted extract_vllm_ascend(const json& doc, Reporter& report) {
  report_unknown_keys(doc, {"moe_layer_count", "layer_list"}, "", report);
  require(doc, {"moe_layer_count", "layer_list"}, "", report);
  Extracted ex;
  ex.form = "vllm-ascend";
  ex.gives_ep_size = true;
  ex.num_layers = stated(doc, "moe_layer_count", "/moe_layer_count", report);
  ex.ep_size = {std::nullopt, "device_count", "/layer_list/0/device_count"};
  set_array_pointers(ex, "/layer_list");
  if (!doc.contains("layer_list")) return ex;
  const json& layers = doc.at("layer_list");
  if (!layers.is_array()) {
    report.add("/layer_list", fmt::format("expected an array of layers, got {}", describe(layers)));
    return ex;
  }
  json map = json::array();
  // Per layer, the first slot of each device, for locating a slot's problem.
  auto device_starts = std::make_shared<std::vector<std::vector<size_t>>>();
  bool ids_ok = true;
  for (size_t i = 0; i < layers.size(); ++i) {
    device_starts->emplace_back();
    map.push_back(read_ascend_layer(layers[i], i, ex, device_starts->back(), ids_ok, report));
  }
  if (!ids_ok) ex.model_layer_ids.clear();
  ex.map = std::move(map);
  ex.layer_pointer = [](size_t layer_idx) { return fmt::format("/layer_list/{}", layer_idx); };
  ex.slot_pointer = [device_starts](size_t layer_idx, size_t slot_idx) {
    const auto& starts = device_starts->at(layer_idx);
    const auto it = std::upper_bound(starts.begin(), starts.end(), slot_idx);
    const size_t device = static_cast<size_t>(it - starts.begin()) - 1;
    return fmt::format("/layer_list/{}/device_list/{}/device_expert/{}", layer_idx, device,
                       slot_idx - starts[device]);
  };
  return ex;
}

// TensorRT-LLM's moe_load_balancer.yaml: num_slots, initial_global_assignments keyed by
// the model's layer number, layer_updates_per_iter (0 for a static placement).
Extracted extract_trtllm(const json& doc, Reporter& report) {
  report_unknown_keys(doc, {"num_slots", "initial_global_assignments", "layer_updates_per_iter"},
                      "", report);
  require(doc, {"num_slots", "initial_global_assignments"}, "", report);
  Extracted ex;
  ex.form = "TensorRT-LLM";
  ex.num_slots_per_layer = stated(doc, "num_slots", "/num_slots", report);
  if (doc.contains("layer_updates_per_iter")) {
    const auto updates = as_int(doc.at("layer_updates_per_iter"));
    if (!updates || *updates < 0) {
      report.add("/layer_updates_per_iter",
                 fmt::format("expected a non-negative integer, got {}",
                             describe(doc.at("layer_updates_per_iter"))));
    }
  }
  set_array_pointers(ex, "/initial_global_assignments");
  if (doc.contains("initial_global_assignments")) {
    read_keyed_layers(doc.at("initial_global_assignments"), "/initial_global_assignments", ex,
                      report);
  }
  return ex;
}

}  // namespace eplb::placement::detail
