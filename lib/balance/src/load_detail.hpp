// Internal to lib/balance: the steps the load readers share (load.cpp, load_vllm.cpp,
// load_trtllm.cpp).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "eplb/balance/load.hpp"
#include "eplb/core/json_reader.hpp"

namespace eplb::balance::detail {

// How a reader's rows are numbered.
enum class Rows {
  kMoe,         // one row per MoE layer (vLLM, the bare arrays)
  kHidden,      // one row per hidden layer, dense ones included (SGLang's recorder)
  kModelKeyed,  // rows keyed by the model's layer number (TensorRT-LLM)
};

// The model's layers the options give: options.model_layers, else the old placement's.
std::optional<placement::ModelLayers> model_of(const LoadOptions& options);

// Fits `out.loads.per_layer` to the model's MoE layers and records the numbering in `out`:
// keeps the MoE rows of a row per hidden layer (a dense row with load is a problem),
// checks a model-keyed form's `keyed_ids` (ascending) against the model, and refuses a
// row count that fits neither, saying how to give the model's layers. `pointer` locates
// the rows for messages.
void apply_load_layers(Rows rows, const std::vector<int32_t>& keyed_ids, const LoadOptions& options,
                       const std::string& pointer, ParsedLoads& out, core::json::Reporter& report);

// vLLM's load-stats JSONL (load_vllm.cpp).
ParsedLoads parse_vllm_stats(const std::string& text, const LoadOptions& options);

// True when the text's first non-blank line is a JSON object with a "record_type" of
// vLLM's load statistics.
bool looks_like_vllm_stats(const std::string& text);

// The largest load one value or a layer's total may reach (float32's largest).
double max_load();

}  // namespace eplb::balance::detail
