// libFuzzer target for the Hugging Face name mapping (lib/hf model.cpp): config.json and the
// tensor catalogue, with or without an --experts pattern, as `import` and `export` see them.
// Built only with clang and -DEPLB_FUZZ=ON (test/fuzz/README.md).
//
// The input is one JSON object: {"config": {...}, "experts": "PATTERN" (optional),
// "tensors": {"NAME": ["DTYPE", [dims...]], ...}}; inputs that do not have that shape are
// skipped (the JSON parser is not what is fuzzed here). Bad content must end in
// core::Error(kInput), or kUsage for a bad pattern; any other exception, a crash, a sanitizer
// report, a hang or a memory blow-up (a count in the config looped over) is a finding. Every
// accepted map must name, for each MoE layer, expert and slot tensor, a tensor of the
// catalogue with the map's dtype and shape.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/hf/model.hpp"

namespace {

using nlohmann::json;

void require(bool condition) {
  if (!condition) std::abort();
}

void check_accepted(const eplb::hf::ModelMap& map, const eplb::hf::Catalog& catalog) {
  require(map.num_logical_experts >= 1 && !map.model_layers.empty() && !map.tensors.empty());
  require(std::is_sorted(map.model_layers.begin(), map.model_layers.end()));
  require(std::adjacent_find(map.model_layers.begin(), map.model_layers.end()) ==
          map.model_layers.end());
  // Every tensor the map promises exists: the promise cannot exceed the catalogue.
  uint64_t promised = 0;
  for (const auto& t : map.tensors) {
    promised += map.model_layers.size() * (t.stacked ? 1 : uint64_t(map.num_logical_experts));
  }
  require(promised <= catalog.size());
  for (size_t i = 0; i < map.tensors.size(); ++i) {
    const auto& t = map.tensors[i];
    require(i == 0 || map.tensors[i - 1].name < t.name);
    for (int32_t layer : map.model_layers) {
      for (int32_t e = 0; e < (t.stacked ? 1 : map.num_logical_experts); ++e) {
        auto it = catalog.find(map.hf_name(i, layer, e));
        require(it != catalog.end());
        require(it->second.dtype == t.dtype);
        std::vector<int64_t> shape = t.shape;
        if (t.stacked) shape.insert(shape.begin(), map.num_logical_experts);
        require(it->second.shape == shape);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const json doc = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("tensors") || !doc["tensors"].is_object()) return 0;
  eplb::hf::Catalog catalog;
  for (const auto& [name, entry] : doc["tensors"].items()) {
    if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_array()) {
      return 0;
    }
    auto dtype = eplb::io::dtype_from_safetensors(entry[0].get<std::string>());
    if (!dtype) return 0;
    eplb::hf::TensorInfo info{*dtype, {}, "f.safetensors"};
    for (const auto& d : entry[1]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return 0;
      info.shape.push_back(d.get<int64_t>());
    }
    catalog.emplace(name, std::move(info));
  }
  const json config = doc.value("config", json());
  const std::string pattern = doc.contains("experts") && doc["experts"].is_string()
                                  ? doc["experts"].get<std::string>()
                                  : "";
  try {
    check_accepted(eplb::hf::map_model(config, catalog, pattern, "fuzz"), catalog);
  } catch (const eplb::core::Error& error) {
    require(error.kind() == eplb::core::ErrorKind::kInput ||
            (!pattern.empty() && error.kind() == eplb::core::ErrorKind::kUsage));
  }
  return 0;
}
