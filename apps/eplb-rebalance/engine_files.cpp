#include "engine_files.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/hf/model.hpp"
#include "eplb/hf/safetensors.hpp"
#include "eplb/io/manifest.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorKind;

placement::ModelLayers from_hf(const fs::path& dir) {
  const fs::path path = dir / "config.json";
  core::json::Reporter report(path.string());
  const auto config =
      core::json::parse_document(core::read_input_file(path, "model config"), report);
  report.throw_if_any();
  const hf::MoeLayout layout = hf::detect_moe_layers(config, path.string());
  return {layout.moe_layers, layout.num_hidden_layers, fmt::format("--hf '{}'", dir.string())};
}

placement::ModelLayers from_checkpoint(const fs::path& dir) {
  const io::Manifest manifest = io::load_manifest(dir);
  if (!manifest.hugging_face || manifest.hugging_face->model_layers.empty()) {
    throw Error(ErrorKind::kInput,
                fmt::format("'{}' does not record the model's layers (only a checkpoint made by "
                            "import does): give --model-layers or --hf",
                            dir.string()));
  }
  return {manifest.hugging_face->model_layers, 0, fmt::format("--checkpoint '{}'", dir.string())};
}

// Integer tensor values as doubles; empty for other dtypes.
std::vector<double> integer_values(const hf::SafetensorsFile& file, const hf::TensorEntry& t) {
  const std::string_view type = io::to_safetensors(t.dtype);
  const bool is_signed = type.starts_with("I");
  if (!is_signed && !type.starts_with("U")) return {};
  const size_t width = io::dtype_size(t.dtype);
  if (t.num_bytes % width != 0 || t.num_bytes > (uint64_t{1} << 30)) return {};
  std::vector<std::byte> bytes(t.num_bytes);
  file.read(t, 0, bytes);
  std::vector<double> out(t.num_bytes / width);
  for (size_t i = 0; i < out.size(); ++i) {
    const std::byte* at = bytes.data() + i * width;
    int64_t s = 0;
    uint64_t u = 0;
    std::memcpy(&u, at, width);  // little-endian, as safetensors stores them
    if (is_signed && width < 8 && (u >> (8 * width - 1)) != 0) u |= ~uint64_t{0} << (8 * width);
    std::memcpy(&s, &u, sizeof(s));
    out[i] = is_signed ? static_cast<double>(s) : static_cast<double>(u);
  }
  return out;
}

}  // namespace

void add_model_options(CLI::App* app, ModelArgs& args) {
  app->add_option("--model-layers", args.model_layers,
                  "The model's MoE layer numbers, e.g. 3-60 or 1,3,5-7 (for the forms numbered "
                  "by model layer: SGLang, TensorRT-LLM)")
      ->type_name("SPEC");
  app->add_option("--hf", args.hf_dir,
                  "Hugging Face model directory whose config.json gives the model's layers")
      ->check(existing_dir());
  app->add_option("--checkpoint", args.checkpoint,
                  "Checkpoint made by import, whose manifest gives the model's layers")
      ->check(existing_dir());
}

std::optional<placement::ModelLayers> model_layers_from(const ModelArgs& args) {
  const int given = !args.model_layers.empty() + !args.hf_dir.empty() + !args.checkpoint.empty();
  if (given > 1) {
    throw Error(ErrorKind::kUsage,
                "give the model's layers once: --model-layers, --hf or --checkpoint");
  }
  if (!args.model_layers.empty()) return placement::parse_model_layers_spec(args.model_layers);
  if (!args.hf_dir.empty()) return from_hf(args.hf_dir);
  if (!args.checkpoint.empty()) return from_checkpoint(args.checkpoint);
  return std::nullopt;
}

balance::TrtllmStatistic read_trtllm_statistic(const fs::path& dir) {
  balance::TrtllmStatistic out;
  out.dir = dir.string();
  out.meta_info = core::read_input_file(dir / "meta_info.json", "TensorRT-LLM meta_info.json");
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with("rank") && name.ends_with(".safetensors")) files.push_back(it->path());
  }
  if (ec) {
    throw Error(ErrorKind::kIo, fmt::format("cannot list '{}': {}", dir.string(), ec.message()));
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& path : files) {
    const auto file = hf::SafetensorsFile::open(path);
    balance::TrtllmRankFile rank{path.filename().string(), {}};
    for (const auto& t : file.header().tensors) {
      rank.tensors.push_back(
          {t.name, std::string(io::to_safetensors(t.dtype)), t.shape, integer_values(file, t)});
    }
    out.ranks.push_back(std::move(rank));
  }
  return out;
}

}  // namespace eplb::app
