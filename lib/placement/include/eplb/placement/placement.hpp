// The placement model: which logical expert sits in which physical slot, per MoE layer.
//
// Pure and local: no MPI, CUDA or HDF5. Every function acts on the calling process only.
// Physical slot p lives on EP rank p / num_slots_per_rank, local row p % num_slots_per_rank.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/json_reader.hpp"
#include "eplb/placement/model_layers.hpp"

namespace eplb::placement {

struct Placement {
  int32_t ep_size = 0;
  int32_t num_slots_per_rank = 0;
  int32_t num_logical_experts = 0;
  // [layer][physical slot] -> logical expert id, or -1 for an empty slot.
  std::vector<std::vector<int32_t>> physical_to_logical_map;
  // The model's layer number of each MoE layer, as TensorRT-LLM keys its maps: {3: [...],
  // 4: [...]} is MoE layer 0 = model layer 3. Empty when unknown (the forms of vLLM and
  // vllm-ascend count MoE layers and do not say). Writers of forms numbered by the model's
  // layers (SGLang, TensorRT-LLM) need it.
  std::vector<int32_t> model_layer_ids;
  // The model's hidden layer count (config.json num_hidden_layers), 0 when unknown: SGLang's
  // form has a row per hidden layer.
  int32_t num_hidden_layers = 0;

  int32_t num_layers() const { return static_cast<int32_t>(physical_to_logical_map.size()); }
  int32_t num_slots() const { return ep_size * num_slots_per_rank; }
  int32_t expert_at(int32_t layer_idx, int32_t rank, int32_t row_idx) const {
    return physical_to_logical_map[static_cast<size_t>(layer_idx)]
                                  [static_cast<size_t>(rank * num_slots_per_rank + row_idx)];
  }
  bool operator==(const Placement&) const = default;
};

// True when both put the same logical experts in the same slots with the same sizes:
// everything but the model's layer numbering, which a checkpoint manifest does not record.
bool same_slots(const Placement& a, const Placement& b);

struct ParseOptions {
  // Name used in messages, usually the file path ("new.json").
  std::string source_name = "<placement>";
  // Required for the SGLang form and the bare 2-D array; if given for the canonical
  // form it must agree with the file's "ep_size".
  std::optional<int32_t> ep_size;
  // For the SGLang form and the bare array when `ep_size` is not given: the EP size to
  // assume, e.g. the one taken from the checkpoint. Never overrides
  // a canonical file's ep_size.
  std::optional<int32_t> fallback_ep_size;
  // Overrides the derived expert count (max id + 1) when the file does not give one.
  std::optional<int32_t> num_logical_experts;
  // The model's layer numbering (--model-layers, --hf, --checkpoint, or an old placement that
  // records it). A file numbered by model layer must agree with it; a file counting MoE
  // layers gets it; an SGLang map with a row per hidden layer keeps only the MoE rows. A
  // file with a layer count that fits neither is refused.
  std::optional<ModelLayers> model_layers;
};

// Parses every accepted form, told apart by content (docs/PLACEMENT.md lists them):
// the canonical form {"format": "eplb-placement", "version": 1, ...}; SGLang's
// {"physical_to_logical_map": [[...]]}; a bare 2-D array; vLLM's EPLB state
// {"num_moe_layers", "num_logical_experts", "num_physical_experts", "physical_to_logical_map"};
// vLLM's JSONL records {"record_type": "eplb_initial_mapping", ...}, one per line;
// vllm-ascend's expert map {"moe_layer_count", "layer_list": [{"device_list": [...]}]};
// TensorRT-LLM's moe_load_balancer.yaml {num_slots, initial_global_assignments}.
// Validates strictly and throws core::Error(kInput) listing *every* problem, each with its
// location, e.g.
//   "'new.json' at /physical_to_logical_map/3/17: logical expert id 300 is out of range [-1, 256)".
// Text in no accepted form gets one problem that lists the forms and the top-level keys seen.
Placement parse_placement(const std::string& text, const ParseOptions& options);

// Validates a placement object embedded in another document (a checkpoint manifest's
// "placement"): exactly the keys ep_size, num_slots_per_rank, num_logical_experts and
// physical_to_logical_map, each required, checked as strictly as a placement file. Every
// problem goes to `report` with its pointer under `pointer` (e.g. "/placement/ep_size");
// returns nullopt when there was any.
std::optional<Placement> read_placement_object(const nlohmann::json& object,
                                               std::string_view pointer,
                                               core::json::Reporter& report);

// Reads and parses a file; an unreadable file is an input error naming the path.
Placement load_placement(const std::filesystem::path& path, ParseOptions options);

// A command-line placement argument: inline JSON when its first non-blank character is
// '{' or '[' (a file whose name starts so is given as ./NAME), else a file path.
bool is_inline_json(const std::string& arg);
// The name messages use for such an argument: the path, or "<option> (inline JSON)".
std::string argument_name(const std::string& arg, const std::string& option);
// Parses an inline argument or loads the file it names; options.source_name is set to
// argument_name(arg, option).
Placement load_placement_argument(const std::string& arg, const std::string& option,
                                  ParseOptions options);

// The canonical JSON form (one line per layer), parseable by parse_placement.
std::string to_json(const Placement& placement);

struct CompatibleOptions {
  // A logical expert that old holds in a layer and new does not would lose its weights.
  bool allow_dropping_experts = false;
};

// Checks that `new_placement` can be reached from `old_placement`: same layer count, same
// expert count, every logical expert used in a layer of `new` is held by at least one slot
// of that layer in `old`, and (unless allowed) every logical expert `old` holds in a layer
// is still held by `new` there. Returns every problem (empty when compatible).
std::vector<std::string> check_compatible(const Placement& old_placement,
                                          const Placement& new_placement,
                                          const std::string& old_name, const std::string& new_name,
                                          const CompatibleOptions& options = {});

}  // namespace eplb::placement
