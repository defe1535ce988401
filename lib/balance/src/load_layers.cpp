// Load rows to MoE layers: each engine numbers its rows its own way (load_detail.hpp).
#include <fmt/format.h>

#include <algorithm>

#include "load_detail.hpp"

namespace eplb::balance::detail {
namespace {

using placement::format_layer_numbers;
using placement::kModelLayersHint;

bool all_zero(const std::vector<double>& row) {
  return std::all_of(row.begin(), row.end(), [](double v) { return v == 0; });
}

// SGLang's rows with the model unknown: refused when some rows read 0 throughout (the dense
// layers SGLang records as zeros), since they cannot be told from MoE layers that got no
// token; otherwise every row is a MoE layer.
void check_unknown_hidden(const ParsedLoads& out, const std::string& pointer,
                          core::json::Reporter& report) {
  const auto& rows = out.loads.per_layer;
  std::vector<int32_t> zero_rows;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (all_zero(rows[i])) zero_rows.push_back(static_cast<int32_t>(i));
  }
  if (zero_rows.empty() || rows.size() == 1) return;
  report.add(pointer,
             fmt::format("{} {} {} no load at all: SGLang's recorder writes a row per hidden "
                         "layer, 0 for dense layers, so which rows are MoE layers cannot be told; "
                         "{}",
                         zero_rows.size() == 1 ? "row" : "rows", format_layer_numbers(zero_rows),
                         zero_rows.size() == 1 ? "has" : "have", kModelLayersHint));
}

}  // namespace

std::optional<placement::ModelLayers> model_of(const LoadOptions& options) {
  if (options.model_layers) return options.model_layers;
  const placement::Placement* old_p = options.old_placement;
  if (old_p == nullptr || old_p->model_layer_ids.empty()) return std::nullopt;
  return placement::ModelLayers{old_p->model_layer_ids, old_p->num_hidden_layers,
                                "as the old placement records them"};
}

void apply_load_layers(Rows kind, const std::vector<int32_t>& keyed_ids, const LoadOptions& options,
                       const std::string& pointer, ParsedLoads& out, core::json::Reporter& report) {
  const auto model = model_of(options);
  auto& rows = out.loads.per_layer;
  if (kind == Rows::kModelKeyed) {
    if (model && keyed_ids != model->moe_layers) {
      report.add(pointer,
                 fmt::format("model layers {} disagree with the model's MoE layers {} ({})",
                             format_layer_numbers(keyed_ids),
                             format_layer_numbers(model->moe_layers), model->source));
    }
    out.model_layer_ids = keyed_ids;
    out.num_hidden_layers = model ? model->num_hidden_layers : 0;
    return;
  }
  if (!model) {
    if (kind == Rows::kHidden) check_unknown_hidden(out, pointer, report);
    return;
  }
  const auto& moe = model->moe_layers;
  const auto hidden = static_cast<size_t>(model->hidden_layers());
  if (kind == Rows::kHidden && rows.size() != moe.size() && rows.size() >= hidden &&
      (model->num_hidden_layers == 0 || rows.size() == hidden)) {
    std::vector<std::vector<double>> moe_rows;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (std::binary_search(moe.begin(), moe.end(), static_cast<int32_t>(i))) {
        moe_rows.push_back(rows[i]);
      } else if (!all_zero(rows[i])) {
        report.add(fmt::format("{}/{}", pointer, i),
                   fmt::format("row {} is a dense layer of the model (MoE layers {}; {}) but has "
                               "load: these loads are not this model's",
                               i, format_layer_numbers(moe), model->source));
      }
    }
    out.num_hidden_layers = static_cast<int32_t>(rows.size());
    rows = std::move(moe_rows);
  } else if (rows.size() != moe.size()) {
    report.add(pointer,
               fmt::format("{} layers of loads, but the model has {} MoE layers ({}{}; {})",
                           rows.size(), moe.size(), format_layer_numbers(moe),
                           kind == Rows::kHidden
                               ? fmt::format(") and {} hidden layers (SGLang's recorder writes a "
                                             "row per hidden layer",
                                             hidden)
                               : "",
                           model->source));
  }
  out.model_layer_ids = moe;
  if (model->num_hidden_layers > 0) out.num_hidden_layers = model->num_hidden_layers;
}

}  // namespace eplb::balance::detail
