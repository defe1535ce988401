// The canonical form's reader ({"format": "eplb-placement", ...}) and the placement object a
// checkpoint manifest embeds. Texts are documented in docs/PLACEMENT.md.
#include <fmt/format.h>

#include <limits>
#include <set>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "reader.hpp"

namespace eplb::placement {
namespace detail {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::pointer_to_key;

constexpr std::string_view kFormatName = "eplb-placement";
constexpr int64_t kSupportedVersion = 1;
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

void check_format_and_version(const json& doc, Reporter& report) {
  if (!doc.contains("format")) {
    report.add("", "missing required key \"format\"");
  } else if (const json& format = doc.at("format"); !format.is_string()) {
    report.add("/format", fmt::format("expected a string, got {}", describe(format)));
  } else if (format.get_ref<const std::string&>() != kFormatName) {
    report.add("/format",
               fmt::format("unknown format {} (expected \"{}\")", format.dump(), kFormatName));
  }
  if (!doc.contains("version")) {
    report.add("", "missing required key \"version\"");
  } else if (const auto version = as_int(doc.at("version")); !version) {
    report.add("/version", fmt::format("expected an integer, got {}", describe(doc.at("version"))));
  } else if (*version != kSupportedVersion) {
    report.add("/version", fmt::format("unsupported version {} (this build reads version {})",
                                       *version, kSupportedVersion));
  }
}

// model_layer_ids: one distinct non-negative integer per layer (length checked in finish).
std::vector<int32_t> read_model_layer_ids(const json& value, Reporter& report) {
  std::vector<int32_t> ids;
  if (!value.is_array()) {
    report.add("/model_layer_ids",
               fmt::format("expected an array of integers, got {}", describe(value)));
    return ids;
  }
  std::set<int64_t> seen;
  for (size_t i = 0; i < value.size(); ++i) {
    const auto id = as_int(value[i]);
    const std::string pointer = fmt::format("/model_layer_ids/{}", i);
    if (!id) {
      report.add(pointer, fmt::format("expected an integer, got {}", describe(value[i])));
    } else if (*id < 0 || *id > kInt32Max) {
      report.add(pointer, fmt::format("model layer id {} is out of range [0, {}]", *id, kInt32Max));
    } else if (!seen.insert(*id).second) {
      report.add(pointer, fmt::format("model layer id {} appears twice", *id));
    } else {
      ids.push_back(static_cast<int32_t>(*id));
    }
  }
  if (ids.size() != value.size()) ids.clear();
  return ids;
}

}  // namespace

Extracted extract_canonical(const json& doc, Reporter& report) {
  report_unknown_keys(doc,
                      {"format", "version", "ep_size", "num_slots_per_rank", "num_logical_experts",
                       "model_layer_ids", "num_hidden_layers", "physical_to_logical_map"},
                      "", report);
  check_format_and_version(doc, report);
  Extracted ex;
  ex.form = "canonical";
  ex.gives_ep_size = true;
  ex.ep_size = {std::nullopt, "ep_size", "/ep_size"};
  ex.num_logical_experts.key = "num_logical_experts";
  ex.num_logical_experts.pointer = "/num_logical_experts";
  set_array_pointers(ex, "/physical_to_logical_map");
  if (doc.contains("ep_size")) {
    ex.ep_size.value = read_count(doc, "ep_size", "/ep_size", report);
  } else {
    report.add("", "missing required key \"ep_size\"");
  }
  if (doc.contains("num_slots_per_rank")) {
    ex.num_slots_per_rank = read_count(doc, "num_slots_per_rank", "/num_slots_per_rank", report);
  }
  if (doc.contains("num_logical_experts")) {
    ex.num_logical_experts.value =
        read_count(doc, "num_logical_experts", "/num_logical_experts", report);
  }
  if (doc.contains("model_layer_ids")) {
    ex.model_layer_ids = read_model_layer_ids(doc.at("model_layer_ids"), report);
    ex.model_layer_ids_pointer = "/model_layer_ids";
  }
  if (doc.contains("num_hidden_layers")) {
    ex.num_hidden_layers = read_count(doc, "num_hidden_layers", "/num_hidden_layers", report);
  }
  if (doc.contains("physical_to_logical_map")) {
    ex.map = doc.at("physical_to_logical_map");
  } else {
    report.add("", "missing required key \"physical_to_logical_map\"");
  }
  return ex;
}

}  // namespace detail

std::optional<Placement> read_placement_object(const nlohmann::json& object,
                                               std::string_view pointer,
                                               core::json::Reporter& report) {
  using namespace detail;
  struct RestorePrefix {
    core::json::Reporter& report;
    std::string saved;
    ~RestorePrefix() { report.set_prefix(saved); }
  } restore{report, report.prefix()};
  report.set_prefix(report.prefix() + std::string(pointer));
  if (!object.is_object()) {
    report.add("", fmt::format("expected a placement object, got {}", describe(object)));
    return std::nullopt;
  }
  const size_t num_problems_before = report.problems().size();
  // Embedded: no format or version of its own, every count stated, and no layer numbering
  // (the manifest's hugging_face section has the model's).
  for (const char* key : {"format", "version", "model_layer_ids", "num_hidden_layers"}) {
    if (object.contains(key))
      report.add(pointer_to_key(key), fmt::format("unknown key \"{}\"", key));
  }
  for (const char* key : {"num_slots_per_rank", "num_logical_experts"}) {
    if (!object.contains(key)) report.add("", fmt::format("missing required key \"{}\"", key));
  }
  json canonical = object;
  canonical["format"] = std::string(kFormatName);
  canonical["version"] = kSupportedVersion;
  canonical.erase("model_layer_ids");
  canonical.erase("num_hidden_layers");
  try {
    const Extracted ex = extract_canonical(canonical, report);
    Placement placement = finish(ex, ParseOptions{}, report);
    if (report.problems().size() != num_problems_before) return std::nullopt;
    return placement;
  } catch (const core::Error&) {
    return std::nullopt;  // every problem is in `report`
  }
}

}  // namespace eplb::placement
