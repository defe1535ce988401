// Writing a placement in the forms engines read (`eplb-rebalance placement convert`), each in
// its engine's layer numbering (docs/PLACEMENT.md): SGLang a row per hidden layer, dense
// layers as SGLang itself fills them; TensorRT-LLM keyed by model layer number; vLLM and
// vllm-ascend counting MoE layers from 0.
//
// Pure and local. Every writer's output parses back (parse_placement) to the same
// placement, given what the form does not carry: ep_size for the SGLang, vLLM and
// TensorRT-LLM forms, the expert count where no slot holds the highest expert, and the
// model's layers for the forms that do not record them (lost_in says which).
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

// What to do with an empty slot (-1) that the form cannot express (can_express_empty).
enum class FillEmpty {
  kRefuse,           // refuse the conversion, naming each empty slot
  kLeastReplicated,  // fill each with a replica of its layer's expert with the fewest slots
};
std::optional<FillEmpty> fill_empty_from_name(std::string_view name);  // "least-replicated"

struct WriteOptions {
  FillEmpty fill_empty = FillEmpty::kRefuse;
};

// Whether the engine reads -1 as an empty slot: the canonical form and vLLM's state do;
// SGLang would index with it (the last expert), the others take only expert ids.
bool can_express_empty(WriteForm form);

// `placement` with every empty slot filled: slot by slot, in slot order, each gets the
// logical expert that has the fewest slots in its layer at that point (the lowest id among
// equals), so an expert in no slot gets one first.
Placement fill_empty_slots(const Placement& placement);

// The text of `placement` in `form`; JSON through nlohmann's serializer, YAML through
// yaml-cpp's emitter. Throws core::Error(kInput) naming `source` when the form needs the
// model's layer numbers and the placement has none (SGLang, TensorRT-LLM), or when it has
// empty slots the form cannot express and options.fill_empty is kRefuse (every such slot
// named by layer and slot, the first 20 listed).
std::string write_placement(const Placement& placement, WriteForm form,
                            const WriteOptions& options = {}, std::string_view source = "IN");

// What `form` cannot carry of `placement`, one sentence each (empty: nothing is lost).
std::vector<std::string> lost_in(const Placement& placement, WriteForm form);

}  // namespace eplb::placement
