// Internal to lib/placement: what each form's reader extracts from a document, and the
// shared checks that turn it into a Placement. Every engine form is read into an
// Extracted, so derivation, range checks and messages are the same for all of them.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "eplb/core/json_reader.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::placement::detail {

using core::json::Reporter;
using nlohmann::json;

// A count the file states, and where, so that a disagreement is reported at its key.
struct StatedCount {
  std::optional<int64_t> value;
  std::string key;      // "num_physical_experts"
  std::string pointer;  // "/num_physical_experts"
};

struct Extracted {
  std::string form;  // for messages: "canonical", "SGLang", "vLLM EPLB state", ...
  // The canonical and vllm-ascend forms give ep_size; the others take the caller's.
  bool gives_ep_size = false;
  StatedCount ep_size;
  std::optional<int64_t> num_slots_per_rank;
  StatedCount num_logical_experts;
  StatedCount num_layers;           // num_moe_layers, moe_layer_count
  StatedCount num_slots_per_layer;  // num_physical_experts, num_slots
  // [layer][slot], as found (non-integers are reported by the shared checks).
  std::optional<json> map;
  std::string map_pointer;
  std::function<std::string(size_t layer_idx)> layer_pointer;
  std::function<std::string(size_t layer_idx, size_t slot_idx)> slot_pointer;
  std::vector<int32_t> model_layer_ids;  // as found; identity is normalised away later
};

// Pointers of a map stored as an array of arrays at `map_pointer`.
void set_array_pointers(Extracted& ex, const std::string& map_pointer);

// A positive int32 at `key` of `object`, or nullopt (reported) when present but invalid.
std::optional<int64_t> read_count(const json& object, const std::string& key,
                                  const std::string& pointer, Reporter& report);

// Reports every key of `object` not in `known` as unknown, at `pointer`/key.
void report_unknown_keys(const json& object, const std::set<std::string>& known,
                         const std::string& pointer, Reporter& report);

// Layers keyed by layer number ({"3": [...], "4": [...]}, TensorRT-LLM and vLLM JSONL):
// checks the keys, sorts them numerically, fills map, pointers and model_layer_ids.
void read_keyed_layers(const json& object, const std::string& pointer, Extracted& ex,
                       Reporter& report);

// vLLM's JSONL text (one record per line, forms_read.cpp): the eplb_initial_mapping record
// read as a placement, problems named "<file>:<line>".
Placement parse_jsonl(const std::string& text, const ParseOptions& options);

// The engine forms (forms_read.cpp). Each reports what it finds wrong with its own keys.
Extracted extract_vllm_state(const json& doc, Reporter& report);
Extracted extract_vllm_record(const json& doc, Reporter& report);
Extracted extract_vllm_ascend(const json& doc, Reporter& report);
Extracted extract_trtllm(const json& doc, Reporter& report);

// YAML text -> the equivalent JSON value (plain scalars that read as integers, floats,
// booleans or null become those; everything else strings). Duplicate keys are reported;
// malformed YAML throws at once with its line and column.
json yaml_to_json(const std::string& text, Reporter& report);

// The shared checks: shapes, ep_size, slots per rank, expert count and range.
Placement finish(const Extracted& ex, const ParseOptions& options, Reporter& report);

// "not a placement in any accepted form (...); accepted forms: ..."
std::string unrecognised(const std::string& found);

}  // namespace eplb::placement::detail
