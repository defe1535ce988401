#include "eplb/hf/inspect.hpp"

#include <system_error>

#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/hf/safetensors.hpp"

namespace eplb::hf {

ModelSummary inspect_model(const std::filesystem::path& hf_dir,
                           const std::string& experts_pattern) {
  ModelSummary out;
  const Index index = load_index(hf_dir);
  const ModelFiles files(index);
  Catalog catalog;
  for (const auto& file : files.files()) {
    out.files.push_back(file.path().filename().string());
    out.file_bytes += file.file_size();
    for (const auto& t : file.header().tensors) {
      catalog[t.name] = {t.dtype, t.shape, file.path().filename().string()};
    }
  }
  // config.json is optional with a pattern, as for import.
  const std::filesystem::path config_path = hf_dir / "config.json";
  nlohmann::json config;
  std::error_code ec;
  if (experts_pattern.empty() || std::filesystem::exists(config_path, ec)) {
    core::json::Reporter report(config_path.string());
    config = core::json::parse_document(core::read_input_file(config_path, "model config"), report);
    report.throw_if_any();
  }
  out.map = map_model(config, catalog, experts_pattern, hf_dir.string());
  for (const auto& spec : out.map.specs()) out.bytes_per_expert += spec.row_bytes();
  out.bytes_per_layer = out.bytes_per_expert * static_cast<uint64_t>(out.map.num_logical_experts);
  out.expert_bytes = out.bytes_per_layer * out.map.model_layers.size();
  return out;
}

}  // namespace eplb::hf
