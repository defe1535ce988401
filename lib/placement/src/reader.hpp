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
  // The model's layer numbering the file states (canonical model_layer_ids, TensorRT-LLM's
  // keys), and where; empty when the file counts MoE layers or says nothing.
  std::vector<int32_t> model_layer_ids;
  std::string model_layer_ids_pointer;
  std::optional<int64_t> num_hidden_layers;  // canonical "num_hidden_layers"
  // SGLang's map (and the bare array, its nearest form) may have a row per hidden layer.
  bool rows_may_be_hidden_layers = false;
  // The document has a key "ep_size" its form does not know, reported as unknown: then
  // "does not give ep_size" would contradict that message.
  bool has_unknown_ep_size = false;
};

// Pointers of a map stored as an array of arrays at `map_pointer`.
void set_array_pointers(Extracted& ex, const std::string& map_pointer);

// A positive int32 at `key` of `object`, or nullopt (reported) when present but invalid.
std::optional<int64_t> read_count(const json& object, const std::string& key,
                                  const std::string& pointer, Reporter& report);

// The count at `key` when present (read_count), with its key and pointer for messages.
StatedCount stated(const json& doc, const std::string& key, const std::string& pointer,
                   Reporter& report);
// Reports each of `keys` missing from `doc`, at `pointer`.
void require(const json& doc, std::initializer_list<const char*> keys, const std::string& pointer,
             Reporter& report);

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

// The canonical form (canonical.cpp).
Extracted extract_canonical(const json& doc, Reporter& report);

// The engine forms (forms_read.cpp, forms_vllm.cpp). Each reports what it finds wrong with its own
// keys.
Extracted extract_vllm_state(const json& doc, Reporter& report);
// vLLM state's logical_replica_count and logical_to_physical_map, when present, against its map.
void check_vllm_replica_maps(const json& doc, int64_t num_experts, Reporter& report);
Extracted extract_vllm_record(const json& doc, Reporter& report);
Extracted extract_vllm_ascend(const json& doc, Reporter& report);
Extracted extract_trtllm(const json& doc, Reporter& report);
// TensorRT-LLM's LLM API options file may hold the balancer's settings inline: moe_config:
// {load_balancer: {num_slots: ..., ...}}. Returns that object, with `report`'s prefix set to
// its pointer (the file's other options are TensorRT-LLM's and not read), or else `doc`.
// Throws when load_balancer is absent or names another file.
const json& unwrap_trtllm_options(const json& doc, Reporter& report);

// YAML text -> the equivalent JSON value (plain scalars that read as integers, floats,
// booleans or null become those; everything else strings). Duplicate keys are reported;
// malformed YAML throws at once with its line and column.
json yaml_to_json(const std::string& text, Reporter& report);

// The shared checks: shapes, ep_size, slots per rank, expert count and range.
Placement finish(const Extracted& ex, const ParseOptions& options, Reporter& report);

// The layer numbering step of finish (model_layers.cpp): records the file's and the caller's
// numbering in `placement` (they must agree), and keeps only the MoE rows of a map that has
// a row per hidden layer. `placement` holds every row of the map.
void apply_model_layers(const Extracted& ex, const ParseOptions& options, Placement& placement,
                        Reporter& report);

// "not a placement in any accepted form (...); accepted forms: ..."
std::string unrecognised(const std::string& found);

}  // namespace eplb::placement::detail
