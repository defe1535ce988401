// Load statistics files: what `balance --load` reads, each engine's as it dumps them. Forms,
// detected from content (docs/PLACEMENT.md, "Making a placement: balance"):
//   - a JSON array [layers][logical experts] of non-negative numbers;
//   - [steps][layers][experts]: summed over steps;
//   - SGLang's recorder dump {"logical_count": <2-D or 3-D array>, "rank": ..., ...}, a row
//     per hidden layer (dense layers read 0), as scripts/sglang-loads-to-json.py writes it
//     from SGLang's .pt;
//   - vLLM's load-stats JSONL: an eplb_load_meta record, then eplb_load_stats records, each
//     with per-slot loads and the physical_to_logical map they were measured under;
//   - vLLM-style per-physical-slot loads [layers][physical slots] (or [steps][...]),
//     folded onto logical experts through the placement the loads were measured under;
//   - TensorRT-LLM's expert statistic directory (meta_info.json + rank<r>.safetensors),
//     which the caller reads (parse_trtllm_statistic).
//
// Pure and local: acts on the calling process only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eplb/balance/balance.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::balance {

enum class LoadForm {
  kAuto,      // from content, see parse_loads
  kLogical,   // one load per logical expert
  kPhysical,  // one load per physical slot of the old placement
};

struct LoadOptions {
  std::string source_name = "<loads>";  // used in messages, usually the path
  // The placement the loads were measured under (`--old`): folds per-slot loads and tells
  // the two array forms apart. May be null.
  const placement::Placement* old_placement = nullptr;
  LoadForm form = LoadForm::kAuto;
  // The model's layer numbering (--model-layers, --hf, --checkpoint); else the old
  // placement's when it records one. Selects the MoE rows of SGLang's row per hidden layer,
  // and must agree with TensorRT-LLM's layer numbers.
  std::optional<placement::ModelLayers> model_layers;
};

struct ParsedLoads {
  Loads loads;       // per MoE layer
  std::string form;  // for the report, e.g. "per logical expert, summed over 3 steps"
  // The model's layer number of each MoE layer, and its hidden layer count, when the loads
  // or the options say (empty / 0 otherwise): the new placement records them.
  std::vector<int32_t> model_layer_ids;
  int32_t num_hidden_layers = 0;
};

// Parses and validates strictly; throws core::Error listing every problem with its JSON
// location ("'load.json' at /3/17: load -1 is negative"). kInput for content problems;
// kUsage when the form cannot be told from content and --load-form decides it.
// In kAuto, an array with N loads per layer is per physical slot when an old placement is
// given and N is its slot count but not its expert count; per logical expert otherwise.
// When N is both (no redundant slots) and the old placement is not the identity in every
// layer, the form is ambiguous and kUsage asks for --load-form.
ParsedLoads parse_loads(const std::string& json_text, const LoadOptions& options);

// Reads the file with core::read_input_file and parses it.
ParsedLoads load_loads(const std::filesystem::path& path, LoadOptions options);

// TensorRT-LLM's expert statistic (tensorrt_llm/_torch/expert_statistic.py, with
// EXPERT_STATISTIC_ITER_RANGE set): meta_info.json {"num_experts", "num_experts_per_token"}
// and one rank<r>.safetensors per EP rank holding, per (iteration, model layer), the tokens
// routed to each expert: 1-D tensor "<iter>_<layer>" of num_experts integers. The caller
// reads the files (lib/hf's safetensors reader); this checks and sums them.
struct TrtllmTensor {
  std::string name;   // "<iter>_<layer>"
  std::string dtype;  // safetensors dtype ("I64" as torch.bincount writes)
  std::vector<int64_t> shape;
  std::vector<double> values;  // empty unless the dtype is an integer type
};
struct TrtllmRankFile {
  std::string name;  // "rank0.safetensors"
  std::vector<TrtllmTensor> tensors;
};
struct TrtllmStatistic {
  std::string dir;        // for messages
  std::string meta_info;  // meta_info.json's text
  std::vector<TrtllmRankFile> ranks;
};
// Loads per model layer (the keys' layer numbers, which the result records), summed over
// iterations and ranks. Throws core::Error(kInput) listing every problem: meta_info.json
// not as written, a file not named rank<r> for r = 0..N-1, a tensor name that is not
// "<iter>_<layer>", a dtype that is not an integer type, a shape other than [num_experts],
// a missing (iteration, layer), iterations that are not contiguous, negative counts.
ParsedLoads parse_trtllm_statistic(const TrtllmStatistic& statistic, const LoadOptions& options);

}  // namespace eplb::balance
