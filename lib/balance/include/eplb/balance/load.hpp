// Load statistics files: what `balance --load` reads. Forms, detected from content
// (docs/PLACEMENT.md, "Making a placement: balance"):
//   - a JSON array [layers][logical experts] of non-negative numbers;
//   - [steps][layers][experts]: summed over steps;
//   - SGLang's dump {"logical_count": <2-D or 3-D array>, "rank": ..., ...} (logical);
//   - vLLM-style per-physical-slot loads [layers][physical slots] (or [steps][...]),
//     folded onto logical experts through the placement the loads were measured under.
//
// Pure and local: acts on the calling process only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

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
};

struct ParsedLoads {
  Loads loads;
  std::string form;  // for the report, e.g. "per logical expert, summed over 3 steps"
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

}  // namespace eplb::balance
