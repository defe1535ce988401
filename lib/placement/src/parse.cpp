// parse_placement: JSON text -> Placement, validating strictly.
//
// Validation never stops at the first problem: every check that can still run does, and all
// problems are thrown together. Texts are documented in docs/PLACEMENT.md; keep them in sync.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/ids.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::placement {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::pointer_to_key;
using core::json::Reporter;
using nlohmann::json;

// A Reporter whose pointers are relative to `base`: the same checks serve a placement file
// (base "") and a placement object inside another document (a manifest's "/placement").
class At {
 public:
  At(Reporter& report, std::string base) : report_(report), base_(std::move(base)) {}
  void add(std::string_view pointer, std::string_view text) {
    report_.add(base_ + std::string(pointer), text);
  }

 private:
  Reporter& report_;
  std::string base_;
};

constexpr std::string_view kFormatName = "eplb-placement";
constexpr int64_t kSupportedVersion = 1;
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
// A broken map (e.g. all strings) would otherwise print one line per slot.
constexpr int kMaxProblemsPerLayer = 20;

// What the document says, before anything is derived.
struct Header {
  std::string form;  // "canonical", "SGLang" or "bare array", for messages
  std::optional<int64_t> ep_size;
  std::optional<int64_t> num_slots_per_rank;
  std::optional<int64_t> num_logical_experts;
  const json* map = nullptr;  // physical_to_logical_map; null when missing
  std::string map_pointer;
};

Header make_header(std::string form, const json* map, std::string map_pointer) {
  Header header;
  header.form = std::move(form);
  header.map = map;
  header.map_pointer = std::move(map_pointer);
  return header;
}

// A positive int32 at `key`, or nullopt (reported) when present but invalid.
std::optional<int64_t> read_count(const json& object, const std::string& key, At& report) {
  const json& value = object.at(key);
  const std::string pointer = pointer_to_key(key);
  const auto number = as_int(value);
  if (!number) {
    report.add(pointer, fmt::format("expected an integer, got {}", describe(value)));
  } else if (*number <= 0) {
    report.add(pointer, fmt::format("{} must be positive, got {}", key, *number));
  } else if (*number > kInt32Max) {
    report.add(pointer, fmt::format("{} {} is too large (at most {})", key, *number, kInt32Max));
  } else {
    return number;
  }
  return std::nullopt;
}

void check_format_and_version(const json& doc, At& report) {
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

// The canonical form's keys. An embedded placement (a manifest's) has no format or
// version of its own, and states every count.
Header read_canonical(const json& doc, At& report, bool embedded = false) {
  static const std::set<std::string> kKnownKeys = {"format",
                                                   "version",
                                                   "ep_size",
                                                   "num_slots_per_rank",
                                                   "num_logical_experts",
                                                   "physical_to_logical_map"};
  for (const auto& [key, value] : doc.items()) {
    if (!kKnownKeys.contains(key) || (embedded && (key == "format" || key == "version"))) {
      report.add(pointer_to_key(key), fmt::format("unknown key \"{}\"", key));
    }
  }
  if (!embedded) check_format_and_version(doc, report);
  Header header = make_header("canonical", nullptr, "/physical_to_logical_map");
  auto count = [&](const char* key, bool required) -> std::optional<int64_t> {
    if (doc.contains(key)) return read_count(doc, key, report);
    if (required) report.add("", fmt::format("missing required key \"{}\"", key));
    return std::nullopt;
  };
  header.ep_size = count("ep_size", true);
  header.num_slots_per_rank = count("num_slots_per_rank", embedded);
  header.num_logical_experts = count("num_logical_experts", embedded);
  if (doc.contains("physical_to_logical_map")) {
    header.map = &doc.at("physical_to_logical_map");
  } else {
    report.add("", "missing required key \"physical_to_logical_map\"");
  }
  return header;
}

// Tells the three accepted forms apart. SGLang's file holds only the map; an object with
// any other key is read as the canonical form, so a typo there is reported, not guessed at.
Header read_header(const json& doc, At& report) {
  if (doc.is_array()) return make_header("bare array", &doc, "");
  if (!doc.is_object()) {
    report.add("",
               fmt::format("expected a placement object or a 2-D array, got {}", describe(doc)));
    return make_header("", nullptr, "");
  }
  if (doc.size() == 1 && doc.contains("physical_to_logical_map")) {
    return make_header("SGLang", &doc.at("physical_to_logical_map"), "/physical_to_logical_map");
  }
  return read_canonical(doc, report);
}

// ep_size comes from the file (canonical) or the caller (--ep-size); both must agree.
std::optional<int64_t> resolve_ep_size(const Header& header, const ParseOptions& options,
                                       At& report) {
  if (header.form == "canonical") {
    if (header.ep_size && options.ep_size && *options.ep_size != *header.ep_size) {
      report.add("/ep_size", fmt::format("ep_size {} disagrees with --ep-size {}", *header.ep_size,
                                         *options.ep_size));
      return std::nullopt;
    }
    return header.ep_size;
  }
  if (header.map == nullptr) return std::nullopt;  // not a placement at all; already reported
  if (!options.ep_size && options.fallback_ep_size) return *options.fallback_ep_size;
  if (!options.ep_size) {
    report.add("", fmt::format("the {} form does not give ep_size: pass --ep-size", header.form));
    return std::nullopt;
  }
  if (*options.ep_size <= 0) {
    report.add("", fmt::format("--ep-size must be positive, got {}", *options.ep_size));
    return std::nullopt;
  }
  return *options.ep_size;
}

// The expert count given by the file or else the caller; nullopt means "derive it".
std::optional<int64_t> given_num_logical_experts(const Header& header, const ParseOptions& options,
                                                 At& report) {
  const auto& expected = options.num_logical_experts;
  if (expected && *expected <= 0) {
    report.add("",
               fmt::format("the expected num_logical_experts must be positive, got {}", *expected));
    return header.num_logical_experts;
  }
  if (header.num_logical_experts && expected && *expected != *header.num_logical_experts) {
    report.add("/num_logical_experts",
               fmt::format("num_logical_experts {} disagrees with the expected {}",
                           *header.num_logical_experts, *expected));
  }
  if (header.num_logical_experts) return header.num_logical_experts;
  return expected;
}

std::string row_pointer(const std::string& map_pointer, size_t layer_idx) {
  return fmt::format("{}/{}", map_pointer, layer_idx);
}

// Checks that the map is a non-empty array of equally long arrays. Returns the slot count
// per layer (that of the first layer with the most common length), or nullopt if unknown.
std::optional<int64_t> check_map_shape(const json& map, const std::string& map_pointer,
                                       At& report) {
  if (!map.is_array()) {
    report.add(map_pointer, fmt::format("expected an array of layers, got {}", describe(map)));
    return std::nullopt;
  }
  if (map.empty()) {
    report.add(map_pointer, "no layers");
    return std::nullopt;
  }
  if (std::all_of(map.begin(), map.end(), [](const json& row) { return row.is_number(); })) {
    report.add(map_pointer, "expected an array of layers (a 2-D array), got a 1-D array");
    return std::nullopt;
  }
  std::map<size_t, size_t> count_by_length;
  for (const json& row : map) {
    if (row.is_array()) ++count_by_length[row.size()];
  }
  size_t ref_idx = 0, ref_count = 0, ref_length = 0;
  for (size_t i = 0; i < map.size(); ++i) {
    const json& row = map[i];
    if (!row.is_array()) {
      report.add(row_pointer(map_pointer, i),
                 fmt::format("expected an array of logical expert ids, got {}", describe(row)));
    } else if (count_by_length[row.size()] > ref_count) {
      ref_idx = i;
      ref_count = count_by_length[row.size()];
      ref_length = row.size();
    }
  }
  if (ref_count == 0) return std::nullopt;
  if (ref_length == 0) report.add(row_pointer(map_pointer, ref_idx), "layer has no slots");
  for (size_t i = 0; i < map.size(); ++i) {
    if (map[i].is_array() && map[i].size() != ref_length) {
      report.add(row_pointer(map_pointer, i),
                 fmt::format("layer {} has {} slots, but layer {} has {}", i, map[i].size(),
                             ref_idx, ref_length));
    }
  }
  if (ref_length == 0 || ref_count != map.size()) return std::nullopt;
  return static_cast<int64_t>(ref_length);
}

// Checks row length == ep_size * num_slots_per_rank and returns num_slots_per_rank.
std::optional<int64_t> resolve_slots_per_rank(const Header& header, std::optional<int64_t> ep_size,
                                              std::optional<int64_t> slots_per_layer, At& report) {
  if (!ep_size || !slots_per_layer) return header.num_slots_per_rank;
  if (header.num_slots_per_rank) {
    const int64_t implied = *header.num_slots_per_rank * *ep_size;
    if (implied != *slots_per_layer) {
      report.add("/num_slots_per_rank",
                 fmt::format("num_slots_per_rank {} times ep_size {} is {}, but layers have {} "
                             "slots",
                             *header.num_slots_per_rank, *ep_size, implied, *slots_per_layer));
    }
    return header.num_slots_per_rank;
  }
  if (*slots_per_layer % *ep_size != 0) {
    report.add(header.map_pointer, fmt::format("{} slots per layer is not divisible by ep_size {}",
                                               *slots_per_layer, *ep_size));
    return std::nullopt;
  }
  return *slots_per_layer / *ep_size;
}

// The largest id that could be a logical expert id, or -1 if there is none (all empty).
int64_t max_plausible_id(const json& map) {
  int64_t max_id = -1;
  for (const json& row : map) {
    if (!row.is_array()) continue;
    for (const json& value : row) {
      const auto id = as_int(value);
      if (id && *id < kInt32Max) max_id = std::max(max_id, *id);
    }
  }
  return max_id;
}

// True when every slot is -1, the one case where a missing expert count cannot be derived
// (other ids make max + 1 positive; non-integers are reported on their own).
bool all_slots_empty(const json& map) {
  return std::all_of(map.begin(), map.end(), [](const json& row) {
    return std::all_of(row.begin(), row.end(),
                       [](const json& value) { return as_int(value) == core::kEmptySlot; });
  });
}

// Converts one layer, reporting every slot that is not an id in [-1, num_logical_experts).
std::vector<int32_t> read_layer(const json& row, const std::string& pointer, size_t layer_idx,
                                int64_t num_logical_experts, At& report) {
  std::vector<int32_t> ids(row.size(), core::kEmptySlot);
  int num_problems = 0;
  auto add = [&](size_t slot_idx, const std::string& text) {
    if (++num_problems <= kMaxProblemsPerLayer) {
      report.add(fmt::format("{}/{}", pointer, slot_idx), text);
    }
  };
  for (size_t slot_idx = 0; slot_idx < row.size(); ++slot_idx) {
    const auto id = as_int(row[slot_idx]);
    if (!id) {
      add(slot_idx, fmt::format("expected an integer, got {}", describe(row[slot_idx])));
    } else if (*id < core::kEmptySlot || *id >= num_logical_experts) {
      add(slot_idx,
          fmt::format("logical expert id {} is out of range [-1, {})", *id, num_logical_experts));
    } else {
      ids[slot_idx] = static_cast<int32_t>(*id);
    }
  }
  if (num_problems > kMaxProblemsPerLayer) {
    report.add(pointer, fmt::format("... and {} more problems in layer {}",
                                    num_problems - kMaxProblemsPerLayer, layer_idx));
  }
  return ids;
}

}  // namespace

namespace {

// Everything after the header: the map's shape, the derived counts and every slot.
// Returns nullopt when a problem was reported (or the header had no map).
// `num_problems_before`: how many problems `all` held before this placement was read.
std::optional<Placement> read_body(const Header& header, const ParseOptions& options, At& report,
                                   const Reporter& all, size_t num_problems_before) {
  const auto ep_size = resolve_ep_size(header, options, report);
  auto num_logical_experts = given_num_logical_experts(header, options, report);
  if (header.map == nullptr) return std::nullopt;  // every path without a map reported
  const json& map = *header.map;
  const auto slots_per_layer = check_map_shape(map, header.map_pointer, report);
  const auto slots_per_rank = resolve_slots_per_rank(header, ep_size, slots_per_layer, report);

  if (!num_logical_experts && map.is_array()) {
    num_logical_experts = max_plausible_id(map) + 1;
    if (*num_logical_experts == 0 && slots_per_layer && all_slots_empty(map)) {
      report.add(
          header.map_pointer,
          "every slot is empty (-1), so num_logical_experts cannot be derived: give it explicitly");
    }
  }
  Placement placement;
  if (map.is_array()) {
    for (size_t layer_idx = 0; layer_idx < map.size(); ++layer_idx) {
      if (!map[layer_idx].is_array()) continue;
      placement.physical_to_logical_map.push_back(
          read_layer(map[layer_idx], row_pointer(header.map_pointer, layer_idx), layer_idx,
                     num_logical_experts.value_or(0), report));
    }
  }
  if (all.problems().size() != num_problems_before) return std::nullopt;
  EPLB_ASSERT(ep_size && slots_per_rank && num_logical_experts);
  placement.ep_size = static_cast<int32_t>(*ep_size);
  placement.num_slots_per_rank = static_cast<int32_t>(*slots_per_rank);
  placement.num_logical_experts = static_cast<int32_t>(*num_logical_experts);
  return placement;
}

}  // namespace

Placement parse_placement(const std::string& json_text, const ParseOptions& options) {
  Reporter report(options.source_name);
  At at(report, "");
  const json doc = core::json::parse_document(json_text, report);
  const size_t num_problems_before = report.problems().size();  // duplicate keys
  const Header header = read_header(doc, at);
  auto placement = read_body(header, options, at, report, num_problems_before);
  report.throw_if_any();
  EPLB_ASSERT(placement.has_value());  // every path without a placement reports a problem
  return std::move(*placement);
}

std::optional<Placement> read_placement_object(const nlohmann::json& object,
                                               std::string_view pointer,
                                               core::json::Reporter& report) {
  At at(report, std::string(pointer));
  if (!object.is_object()) {
    at.add("", fmt::format("expected a placement object, got {}", describe(object)));
    return std::nullopt;
  }
  const size_t num_problems_before = report.problems().size();
  const Header header = read_canonical(object, at, /*embedded=*/true);
  return read_body(header, ParseOptions{}, at, report, num_problems_before);
}

}  // namespace eplb::placement
