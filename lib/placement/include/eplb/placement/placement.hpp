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

namespace eplb::placement {

struct Placement {
  int32_t ep_size = 0;
  int32_t num_slots_per_rank = 0;
  int32_t num_logical_experts = 0;
  // [layer][physical slot] -> logical expert id, or -1 for an empty slot.
  std::vector<std::vector<int32_t>> physical_to_logical_map;

  int32_t num_layers() const { return static_cast<int32_t>(physical_to_logical_map.size()); }
  int32_t num_slots() const { return ep_size * num_slots_per_rank; }
  int32_t expert_at(int32_t layer_idx, int32_t rank, int32_t row_idx) const {
    return physical_to_logical_map[layer_idx][rank * num_slots_per_rank + row_idx];
  }
  bool operator==(const Placement&) const = default;
};

struct ParseOptions {
  // Name used in messages, usually the file path ("new.json").
  std::string source_name = "<placement>";
  // Required for the SGLang form and the bare 2-D array; if given for the canonical
  // form it must agree with the file's "ep_size".
  std::optional<int32_t> ep_size;
  // For the SGLang form and the bare array when `ep_size` is not given: the EP size to
  // assume, e.g. the checkpoint's (brief: "taken from the checkpoint"). Never overrides
  // a canonical file's ep_size.
  std::optional<int32_t> fallback_ep_size;
  // Overrides the derived expert count (max id + 1) when the file does not give one.
  std::optional<int32_t> num_logical_experts;
};

// Parses the canonical form {"format": "eplb-placement", "version": 1, ...}, SGLang's
// {"physical_to_logical_map": [[...]]} and a bare 2-D array. Validates strictly and
// throws core::Error(kInput) listing *every* problem, each with its JSON location, e.g.
//   "'new.json' at /physical_to_logical_map/3/17: logical expert id 300 is out of range [-1, 256)".
Placement parse_placement(const std::string& json_text, const ParseOptions& options);

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

// The canonical JSON form (one line per layer), parseable by parse_placement.
std::string to_json(const Placement& placement);

// Checks that `new_placement` can be reached from `old_placement`: same layer count, same
// expert count, and every logical expert used in a layer of `new` is held by at least one
// slot of that layer in `old`. Returns every problem (empty when compatible).
std::vector<std::string> check_compatible(const Placement& old_placement,
                                          const Placement& new_placement,
                                          const std::string& old_name, const std::string& new_name);

}  // namespace eplb::placement
