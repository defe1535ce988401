// Readers of vllm-ascend's expert map and TensorRT-LLM's moe_load_balancer.yaml (vLLM's forms:
// forms_vllm.cpp), and the helpers the engine forms share. Each reports the problems of its
// own keys and hands the map to the shared checks (parse.cpp).
#include <fmt/format.h>

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

}  // namespace

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

namespace {

// One layer of a vllm-ascend map: its devices' ids concatenated in device order, every
// problem located at its device. `starts` gets each device's first slot.
json read_ascend_layer(const json& layer, size_t i, Extracted& ex, std::vector<size_t>& starts,
                       Reporter& report) {
  const std::string lp = fmt::format("/layer_list/{}", i);
  json row = json::array();
  if (!layer.is_object()) {
    report.add(lp, fmt::format("expected a layer object, got {}", describe(layer)));
    return row;
  }
  report_unknown_keys(layer, {"layer_id", "device_count", "device_list"}, lp, report);
  require(layer, {"device_count", "device_list"}, lp, report);
  // vllm-ascend counts MoE layers (its writer numbers them 0, 1, ... in list order).
  if (layer.contains("layer_id") && as_int(layer.at("layer_id")) != static_cast<int64_t>(i)) {
    report.add(
        lp + "/layer_id",
        fmt::format("layer_id {} is not the layer's position {}: vllm-ascend numbers its MoE "
                    "layers 0, 1, ... in list order",
                    layer.at("layer_id").dump(), i));
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
  for (size_t i = 0; i < layers.size(); ++i) {
    device_starts->emplace_back();
    map.push_back(read_ascend_layer(layers[i], i, ex, device_starts->back(), report));
  }
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
// the model's layer number, layer_updates_per_iter (0 for a static placement), and an
// optional ep_size (checked against the slots and --ep-size).
Extracted extract_trtllm(const json& doc, Reporter& report) {
  report_unknown_keys(
      doc, {"num_slots", "initial_global_assignments", "layer_updates_per_iter", "ep_size"}, "",
      report);
  require(doc, {"num_slots", "initial_global_assignments"}, "", report);
  Extracted ex;
  ex.form = "TensorRT-LLM";
  ex.num_slots_per_layer = stated(doc, "num_slots", "/num_slots", report);
  if (doc.contains("ep_size")) {
    ex.gives_ep_size = true;
    ex.ep_size = stated(doc, "ep_size", "/ep_size", report);
  }
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
    if (!ex.model_layer_ids.empty()) ex.model_layer_ids_pointer = "/initial_global_assignments";
  }
  return ex;
}

const json& unwrap_trtllm_options(const json& doc, Reporter& report) {
  if (!doc.is_object() || !doc.contains("moe_config")) return doc;
  const json& moe = doc.at("moe_config");
  if (!moe.is_object() || !moe.contains("load_balancer")) {
    report.add("/moe_config",
               "TensorRT-LLM's options give no load_balancer here (moe_config has "
               "no \"load_balancer\")");
    report.throw_if_any();
  }
  const json& balancer = moe.at("load_balancer");
  if (balancer.is_string()) {
    report.add("/moe_config/load_balancer",
               fmt::format("names the file {}: give that file (the moe_load_balancer.yaml it "
                           "names) instead",
                           balancer.dump()));
    report.throw_if_any();
  }
  report.set_prefix(report.prefix() + "/moe_config/load_balancer");
  return balancer;
}

}  // namespace eplb::placement::detail
