// parse_loads: load statistics JSON -> Loads, validating strictly and reporting every
// problem with its JSON location.
#include "eplb/balance/load.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "load_detail.hpp"

namespace eplb::balance {
namespace {

using core::json::describe;
using core::json::Reporter;
using nlohmann::json;

constexpr int kMaxProblemsPerLayer = 20;
constexpr double kMaxLoad = static_cast<double>(std::numeric_limits<float>::max());
constexpr const char* kForms =
    "a [layers][experts] array of loads, [steps][layers][experts], SGLang's "
    "{\"logical_count\": ...}, vLLM's load-stats JSONL or TensorRT-LLM's expert statistic "
    "directory";

// SGLang's dump (ExpertDistributionRecorder, stat mode) carries these next to the counts.
bool is_sglang_extra(const std::string& key) {
  return key == "rank" || key == "average_utilization_rate_over_window";
}

// The array of counts and where it sits, or null (reported) when the document has none.
const json* find_counts(const json& doc, Reporter& report, std::string& pointer, bool& sglang) {
  if (doc.is_array()) return &doc;
  if (!doc.is_object()) {
    report.add("", fmt::format("expected {}, got {}", kForms, describe(doc)));
    return nullptr;
  }
  std::string seen;
  for (const auto& [key, value] : doc.items()) {
    seen += (seen.empty() ? "\"" : ", \"") + key + "\"";
    if (key != "logical_count" && !is_sglang_extra(key)) {
      report.add(core::json::pointer_to_key(key),
                 fmt::format("unknown key \"{}\" (a load file is {})", key, kForms));
    }
  }
  if (!doc.contains("logical_count")) {
    report.add("", fmt::format("no \"logical_count\" among the keys ({}); expected {}",
                               seen.empty() ? "none" : seen, kForms));
    return nullptr;
  }
  pointer = "/logical_count";
  sglang = true;
  return &doc.at("logical_count");
}

struct Grid {
  size_t num_steps = 0, num_layers = 0, width = 0;
  std::vector<std::vector<double>> sum;  // [layer][column], summed over steps
};

// One row of loads at `pointer`, added into `out` (sized `width`).
void read_row(const json& row, const std::string& pointer, size_t width, std::vector<double>& out,
              Reporter& report) {
  if (!row.is_array()) {
    report.add(pointer, fmt::format("expected an array of {} loads, got {}", width, describe(row)));
    return;
  }
  if (row.size() != width) {
    report.add(pointer,
               fmt::format("expected {} loads (as in the first layer), got {}", width, row.size()));
    return;
  }
  int problems = 0;
  for (size_t i = 0; i < width; ++i) {
    const json& v = row[i];
    std::string text;
    if (!v.is_number()) {
      text = fmt::format("expected a number, got {}", describe(v));
    } else {
      const double d = v.get<double>();
      if (!std::isfinite(d) || d > kMaxLoad) {
        text = fmt::format("load {} is too large (at most {:g}, float32's largest)", v.dump(),
                           kMaxLoad);
      } else if (d < 0) {
        text = fmt::format("load {} is negative (loads are token counts or other measures >= 0)",
                           v.dump());
      } else {
        out[i] += d;
        continue;
      }
    }
    if (problems++ < kMaxProblemsPerLayer) report.add(fmt::format("{}/{}", pointer, i), text);
  }
}

// Reads a 2-D [layers][N] or 3-D [steps][layers][N] array, summing over steps.
Grid read_grid(const json& counts, const std::string& pointer, Reporter& report) {
  Grid grid;
  if (!counts.is_array() || counts.empty() || !counts[0].is_array() || counts[0].empty()) {
    report.add(pointer, fmt::format("expected {} with at least one layer, got {}", kForms,
                                    describe(counts)));
    return grid;
  }
  const bool has_steps = counts[0][0].is_array();
  const json& first_layers = has_steps ? counts[0] : counts;
  grid.num_steps = has_steps ? counts.size() : 1;
  grid.num_layers = first_layers.size();
  if (!first_layers[0].is_array() || first_layers[0].empty()) {
    report.add(
        pointer + (has_steps ? "/0/0" : "/0"),
        fmt::format("expected a non-empty array of loads, got {}", describe(first_layers[0])));
    return grid;
  }
  grid.width = first_layers[0].size();
  grid.sum.assign(grid.num_layers, std::vector<double>(grid.width, 0.0));
  for (size_t step = 0; step < grid.num_steps; ++step) {
    const json& layers = has_steps ? counts[step] : counts;
    const std::string at = has_steps ? fmt::format("{}/{}", pointer, step) : pointer;
    if (!layers.is_array() || layers.size() != grid.num_layers) {
      report.add(at, fmt::format("expected {} layers (as in step 0), got {}", grid.num_layers,
                                 describe(layers)));
      continue;
    }
    for (size_t layer = 0; layer < grid.num_layers; ++layer) {
      read_row(layers[layer], fmt::format("{}/{}", at, layer), grid.width, grid.sum[layer], report);
    }
  }
  return grid;
}

bool is_identity(const placement::Placement& p) {
  for (const auto& layer : p.physical_to_logical_map) {
    for (size_t slot = 0; slot < layer.size(); ++slot) {
      if (layer[slot] != static_cast<int32_t>(slot)) return false;
    }
  }
  return true;
}

LoadForm decide_form(const Grid& grid, const LoadOptions& options, bool sglang, Reporter& report) {
  const placement::Placement* old_p = options.old_placement;
  if (sglang) {
    if (options.form == LoadForm::kPhysical) {
      report.add("/logical_count",
                 "SGLang's logical_count is per logical expert; --load-form physical does not "
                 "apply");
    }
    return LoadForm::kLogical;
  }
  if (options.form != LoadForm::kAuto) return options.form;
  if (!old_p) return LoadForm::kLogical;
  const auto slots = static_cast<size_t>(old_p->num_slots());
  const auto experts = static_cast<size_t>(old_p->num_logical_experts);
  if (grid.width == slots && grid.width != experts) return LoadForm::kPhysical;
  if (grid.width == experts && grid.width == slots && !is_identity(*old_p)) {
    throw core::Error(
        core::ErrorKind::kUsage,
        fmt::format("'{}': {} loads per layer match both the {} physical slots and the {} "
                    "logical experts of the old placement, which maps them differently; say "
                    "which with --load-form logical or --load-form physical",
                    report.source(), grid.width, slots, experts));
  }
  return LoadForm::kLogical;
}

// Per-slot loads summed onto the logical expert each slot held.
void fold(const Grid& grid, const placement::Placement& old_p, const std::string& pointer,
          Loads& loads, Reporter& report) {
  if (grid.num_layers != static_cast<size_t>(old_p.num_layers()) ||
      grid.width != static_cast<size_t>(old_p.num_slots())) {
    report.add(pointer,
               fmt::format("per-slot loads [{}][{}] do not fit the old placement's {} "
                           "layers x {} slots",
                           grid.num_layers, grid.width, old_p.num_layers(), old_p.num_slots()));
    return;
  }
  loads.num_logical_experts = old_p.num_logical_experts;
  loads.per_layer.assign(grid.num_layers,
                         std::vector<double>(static_cast<size_t>(old_p.num_logical_experts), 0.0));
  for (size_t layer = 0; layer < grid.num_layers; ++layer) {
    const auto& map = old_p.physical_to_logical_map[layer];
    for (size_t slot = 0; slot < grid.width; ++slot) {
      const double v = grid.sum[layer][slot];
      if (map[slot] >= 0) {
        loads.per_layer[layer][static_cast<size_t>(map[slot])] += v;
      } else if (v != 0) {
        report.add(
            fmt::format("{}/{}/{}", pointer, layer, slot),
            fmt::format("load {:g} on slot {}, which the old placement leaves empty", v, slot));
      }
    }
  }
}

}  // namespace

namespace detail {
double max_load() { return kMaxLoad; }
}  // namespace detail

ParsedLoads parse_loads(const std::string& text, const LoadOptions& options) {
  if (detail::looks_like_vllm_stats(text)) return detail::parse_vllm_stats(text, options);
  Reporter report(options.source_name);
  const json doc = core::json::parse_document(text, report);
  std::string pointer;
  bool sglang = false;
  const json* counts = find_counts(doc, report, pointer, sglang);
  Grid grid;
  if (counts) grid = read_grid(*counts, pointer, report);
  report.throw_if_any();
  ParsedLoads out;
  const LoadForm form = decide_form(grid, options, sglang, report);
  if (form == LoadForm::kPhysical) {
    if (!options.old_placement) {
      throw core::Error(core::ErrorKind::kUsage,
                        fmt::format("'{}': per-slot loads need the placement they were measured "
                                    "under (--old)",
                                    options.source_name));
    }
    fold(grid, *options.old_placement, pointer, out.loads, report);
  } else {
    if (options.old_placement &&
        grid.width != static_cast<size_t>(options.old_placement->num_logical_experts)) {
      report.add(pointer,
                 fmt::format("{} loads per layer, but the old placement has {} logical experts "
                             "and {} slots",
                             grid.width, options.old_placement->num_logical_experts,
                             options.old_placement->num_slots()));
    }
    out.loads.num_logical_experts = static_cast<int32_t>(grid.width);
    out.loads.per_layer = std::move(grid.sum);
  }
  // SGLang's recorder has a row per hidden layer; the arrays one per MoE layer.
  detail::apply_load_layers(sglang ? detail::Rows::kHidden : detail::Rows::kMoe, {}, options,
                            pointer, out, report);
  for (size_t layer = 0; layer < out.loads.per_layer.size(); ++layer) {
    double total = 0;
    for (double v : out.loads.per_layer[layer]) total += v;
    if (!(total <= kMaxLoad)) {
      report.add(fmt::format("{}/{}", pointer, layer),
                 fmt::format("layer {}'s total load {:g} exceeds float32's largest ({:g})", layer,
                             total, kMaxLoad));
    }
  }
  report.throw_if_any();
  out.form = fmt::format(
      "{}{}{}", sglang ? "SGLang logical_count, " : "",
      form == LoadForm::kPhysical ? "per physical slot, folded through the old placement"
                                  : "per logical expert",
      grid.num_steps > 1 ? fmt::format(", summed over {} steps", grid.num_steps) : "");
  return out;
}

ParsedLoads load_loads(const std::filesystem::path& path, LoadOptions options) {
  if (options.source_name == LoadOptions{}.source_name) options.source_name = path.string();
  return parse_loads(core::read_input_file(path, "load file"), options);
}

}  // namespace eplb::balance
