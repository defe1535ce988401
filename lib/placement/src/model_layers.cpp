// The model's layer numbering (eplb/placement/model_layers.hpp) and how a read placement
// gets it (apply_model_layers, the last step of parse_placement's shared checks).
#include "eplb/placement/model_layers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "eplb/core/error.hpp"
#include "reader.hpp"

namespace eplb::placement {
namespace {

// More model layers than any model has (as lib/hf's limit on num_hidden_layers).
constexpr int32_t kMaxLayerNumber = (1 << 20) - 1;

std::optional<int32_t> layer_number(std::string_view text) {
  int32_t value = 0;
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 ||
      value > kMaxLayerNumber) {
    return std::nullopt;
  }
  return value;
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

}  // namespace

int32_t ModelLayers::hidden_layers() const {
  if (num_hidden_layers > 0) return num_hidden_layers;
  return moe_layers.empty() ? 0 : moe_layers.back() + 1;
}

ModelLayers parse_model_layers_spec(std::string_view spec) {
  const auto refuse = [&](const std::string& why) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("--model-layers '{}': {} (expected the model's MoE layer "
                                  "numbers, e.g. 3-60 or 1,3,5-7)",
                                  spec, why));
  };
  ModelLayers out;
  out.source = fmt::format("--model-layers {}", spec);
  std::string_view rest = spec;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = trimmed(rest.substr(0, comma));
    const size_t dash = item.find('-');
    const auto first = layer_number(trimmed(item.substr(0, dash)));
    const auto last =
        dash == std::string_view::npos ? first : layer_number(trimmed(item.substr(dash + 1)));
    if (!first || !last) {
      refuse(item.empty() ? "an empty item"
                          : fmt::format("'{}' is not a layer number or a range A-B of them "
                                        "(numbers from 0 to {})",
                                        item, kMaxLayerNumber));
    }
    if (*last < *first) refuse(fmt::format("the range '{}' runs backwards", item));
    if (!out.moe_layers.empty() && *first <= out.moe_layers.back()) {
      refuse(fmt::format("'{}' does not come after layer {}: list layers ascending, each once",
                         item, out.moe_layers.back()));
    }
    for (int32_t layer = *first; layer <= *last; ++layer) out.moe_layers.push_back(layer);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

std::string format_layer_numbers(const std::vector<int32_t>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    out += (out.empty() ? "" : ", ") + std::to_string(layers[i]);
    if (j > i) out += (j == i + 1 ? ", " : "-") + std::to_string(layers[j]);
    i = j + 1;
  }
  return out;
}

std::string format_layer_spec(const std::vector<int32_t>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(layers[i]);
    if (j > i) out += "-" + std::to_string(layers[j]);
    i = j + 1;
  }
  return out;
}

namespace detail {

void apply_model_layers(const Extracted& ex, const ParseOptions& options, Placement& placement,
                        Reporter& report) {
  const auto rows = placement.physical_to_logical_map.size();
  const int32_t file_hidden =
      ex.num_hidden_layers ? static_cast<int32_t>(*ex.num_hidden_layers) : 0;
  if (file_hidden > 0 && !ex.model_layer_ids.empty() &&
      *std::max_element(ex.model_layer_ids.begin(), ex.model_layer_ids.end()) >= file_hidden) {
    report.add("/num_hidden_layers",
               fmt::format(
                   "num_hidden_layers {} leaves out model layer {} of model_layer_ids", file_hidden,
                   *std::max_element(ex.model_layer_ids.begin(), ex.model_layer_ids.end())));
  }
  if (!options.model_layers) {
    placement.model_layer_ids = ex.model_layer_ids;
    placement.num_hidden_layers = file_hidden;
    return;
  }
  const ModelLayers& model = *options.model_layers;
  const std::vector<int32_t>& moe = model.moe_layers;
  const auto hidden = static_cast<size_t>(model.hidden_layers());
  int32_t hidden_seen = file_hidden;
  if (!ex.model_layer_ids.empty()) {
    if (ex.model_layer_ids != moe) {
      report.add(ex.model_layer_ids_pointer,
                 fmt::format("model layers {} disagree with the model's MoE layers {} ({})",
                             format_layer_numbers(ex.model_layer_ids), format_layer_numbers(moe),
                             model.source));
    }
  } else if (ex.rows_may_be_hidden_layers && rows != moe.size() && rows >= hidden &&
             (model.num_hidden_layers == 0 || rows == hidden)) {
    // A row per hidden layer (SGLang's own form): keep the MoE layers' rows.
    std::vector<std::vector<int32_t>> moe_rows;
    for (int32_t layer : moe) moe_rows.push_back(placement.physical_to_logical_map[size_t(layer)]);
    placement.physical_to_logical_map = std::move(moe_rows);
    hidden_seen = static_cast<int32_t>(rows);
  } else if (rows != moe.size()) {
    report.add(
        ex.map_pointer,
        fmt::format(
            "{} layers, but the model has {} MoE layers ({}{}; {})", rows, moe.size(),
            format_layer_numbers(moe),
            ex.rows_may_be_hidden_layers
                ? fmt::format(") and {} hidden layers (one row each in SGLang's form", hidden)
                : "",
            model.source));
  }
  if (file_hidden > 0 && model.num_hidden_layers > 0 && file_hidden != model.num_hidden_layers) {
    report.add("/num_hidden_layers",
               fmt::format("num_hidden_layers {} disagrees with the model's {} ({})", file_hidden,
                           model.num_hidden_layers, model.source));
  }
  placement.model_layer_ids = moe;
  placement.num_hidden_layers = model.num_hidden_layers > 0 ? model.num_hidden_layers : hidden_seen;
}

}  // namespace detail
}  // namespace eplb::placement
