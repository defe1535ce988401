// libFuzzer target for the placement reader: every form parse_placement reads (canonical,
// SGLang, bare array, vLLM state and JSONL, vllm-ascend, TensorRT-LLM YAML), told apart by
// content as on the command line. Built only with clang and -DEPLB_FUZZ=ON
// (test/fuzz/README.md).
//
// Bad input must end in core::Error(kInput); any other exception, a crash, a sanitizer
// report or a hang is a finding. Every accepted placement must be well formed, and must
// come back unchanged from every writer (to_json and write_placement's forms) when read
// again with what the form does not carry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/placement/forms.hpp"
#include "eplb/placement/placement.hpp"

namespace {

namespace pl = eplb::placement;

void require(bool condition) {
  if (!condition) std::abort();
}

void check_well_formed(const pl::Placement& p) {
  require(p.ep_size > 0 && p.num_slots_per_rank > 0 && p.num_logical_experts > 0);
  const int64_t slots = int64_t{p.ep_size} * p.num_slots_per_rank;
  for (const std::vector<int32_t>& layer : p.physical_to_logical_map) {
    require(static_cast<int64_t>(layer.size()) == slots);
    for (int32_t id : layer) require(id >= -1 && id < p.num_logical_experts);
  }
  require(p.model_layer_ids.empty() ||
          p.model_layer_ids.size() == p.physical_to_logical_map.size());
}

void check_round_trips(const pl::Placement& p) {
  pl::ParseOptions options;
  options.source_name = "again";
  require(pl::parse_placement(pl::to_json(p), options) == p);
  // What the forms do not carry: ep_size, the expert count and the model's layers
  // (forms.hpp); empty slots become replicas where a form cannot say "empty".
  options.ep_size = p.ep_size;
  options.num_logical_experts = p.num_logical_experts;
  if (!p.model_layer_ids.empty()) {
    options.model_layers = pl::ModelLayers{p.model_layer_ids, p.num_hidden_layers, "fuzz"};
  }
  for (pl::WriteForm form :
       {pl::WriteForm::kCanonical, pl::WriteForm::kSglang, pl::WriteForm::kVllmState,
        pl::WriteForm::kVllmJsonl, pl::WriteForm::kVllmAscend, pl::WriteForm::kTrtllm}) {
    const bool numbered = form == pl::WriteForm::kSglang || form == pl::WriteForm::kTrtllm;
    if (numbered && p.model_layer_ids.empty()) continue;  // refused, by design
    const pl::Placement want = pl::can_express_empty(form) ? p : pl::fill_empty_slots(p);
    const pl::Placement back = pl::parse_placement(
        pl::write_placement(p, form, {pl::FillEmpty::kLeastReplicated}), options);
    require(pl::same_slots(back, want));
    if (pl::lost_in(p, form).empty()) require(back == want);
  }
}

void parse_one(const std::string& text, const pl::ParseOptions& options) {
  std::optional<pl::Placement> placement;
  try {
    placement = pl::parse_placement(text, options);
  } catch (const eplb::core::Error& error) {
    // Refused: fine, as long as it is an input error and nothing else.
    require(error.kind() == eplb::core::ErrorKind::kInput);
    return;
  }
  check_well_formed(*placement);
  check_round_trips(*placement);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  pl::ParseOptions options;
  options.source_name = "fuzz";
  parse_one(text, options);
  // The forms without an EP size (SGLang, bare, vLLM, TensorRT-LLM) are accepted only with
  // one: read them again as the tool does with a checkpoint's.
  options.fallback_ep_size = 2;
  parse_one(text, options);
  return 0;
}
