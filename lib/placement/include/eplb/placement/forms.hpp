// Writing a placement in the forms engines read (`eplb-rebalance placement convert`).
//
// Pure and local. Every writer's output parses back (parse_placement) to the same
// placement, given what the form does not carry: ep_size for the SGLang, vLLM and
// TensorRT-LLM forms, the expert count where no slot holds the highest expert, and the
// model layer numbers for the forms that do not key layers by number (lost_in says which).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/placement/placement.hpp"

namespace eplb::placement {

enum class WriteForm {
  kCanonical,   // {"format": "eplb-placement", ...} (to_json)
  kSglang,      // {"physical_to_logical_map": [[...]]}
  kVllmState,   // {"num_moe_layers", "num_logical_experts", "num_physical_experts", ...}
  kVllmJsonl,   // one {"record_type": "eplb_initial_mapping", ...} line
  kVllmAscend,  // {"moe_layer_count", "layer_list": [...]}
  kTrtllm,      // moe_load_balancer.yaml
};

// "canonical", "sglang", "vllm", "vllm-jsonl", "vllm-ascend", "trtllm".
std::string_view form_name(WriteForm form);
std::optional<WriteForm> form_from_name(std::string_view name);
std::vector<std::string> form_names();

// The text of `placement` in `form`; JSON through nlohmann's serializer, YAML through
// yaml-cpp's emitter.
std::string write_placement(const Placement& placement, WriteForm form);

// What `form` cannot carry of `placement`, one sentence each (empty: nothing is lost).
std::vector<std::string> lost_in(const Placement& placement, WriteForm form);

}  // namespace eplb::placement
