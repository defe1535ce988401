// What a Hugging Face model directory holds for expert parallelism, before any import
// (`eplb-rebalance inspect --hf DIR`): its MoE layers and their model numbers, the routed
// experts, the expert tensors with dtypes and shapes, and the bytes per expert and layer.
//
// Local: reads config.json and the safetensors headers (never tensor data).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "eplb/hf/model.hpp"

namespace eplb::hf {

struct ModelSummary {
  ModelMap map;                    // MoE layers, routed experts, expert tensors
  std::vector<std::string> files;  // the safetensors files, sorted
  uint64_t file_bytes = 0;         // their sizes, summed
  uint64_t bytes_per_expert = 0;   // one logical expert's tensors in one layer
  uint64_t bytes_per_layer = 0;    // every logical expert of one MoE layer
  uint64_t expert_bytes = 0;       // every MoE layer's experts: what `import` shards
};

// Throws core::Error as load_index and map_model do (kInput for a model that is not one,
// kUsage for a bad pattern, kIo for unreadable files). `experts_pattern` as import's
// --experts ("" to detect the family from config.json, which is then required).
ModelSummary inspect_model(const std::filesystem::path& hf_dir, const std::string& experts_pattern);

}  // namespace eplb::hf
