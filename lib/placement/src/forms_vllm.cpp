// Readers of vLLM's placement forms: the EplbState file and the JSONL mapping records of
// tools/eplb/generate_static_mapping.py. vLLM counts MoE layers from 0. Each reports the
// problems of its own keys and hands the map to the shared checks (parse.cpp).
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "reader.hpp"

namespace eplb::placement::detail {

using core::json::as_int;
using core::json::describe;

namespace {

// The slots of each logical expert in one layer of a map, or nullopt when the layer is not
// an array of ids in [-1, num_experts) (the shared checks report that).
std::optional<std::vector<std::vector<int64_t>>> slots_by_expert(const json& row,
                                                                 int64_t num_experts) {
  if (!row.is_array()) return std::nullopt;
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(num_experts));
  for (size_t slot = 0; slot < row.size(); ++slot) {
    const auto id = as_int(row[slot]);
    if (!id || *id < -1 || *id >= num_experts) return std::nullopt;
    if (*id >= 0) slots[static_cast<size_t>(*id)].push_back(static_cast<int64_t>(slot));
  }
  return slots;
}

std::string id_list(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return "[" + out + "]";
}

// One (layer, expert) entry of logical_to_physical_map: its slots then -1 padding.
void check_replica_entry(const json& entry, const std::vector<int64_t>& expected,
                         const std::string& pointer, Reporter& report) {
  std::vector<int64_t> listed;
  bool padding = false, ok = entry.is_array();
  for (size_t k = 0; ok && k < entry.size(); ++k) {
    const auto slot = as_int(entry[k]);
    ok = slot && *slot >= -1 && !(padding && *slot != -1);
    if (ok && *slot == -1) padding = true;
    if (ok && *slot >= 0) listed.push_back(*slot);
  }
  if (!ok) {
    report.add(pointer, fmt::format("expected the expert's slots then -1 padding, got {}",
                                    entry.is_array() ? entry.dump() : describe(entry)));
    return;
  }
  std::sort(listed.begin(), listed.end());
  if (listed != expected) {
    report.add(pointer, fmt::format("lists slots {}, but physical_to_logical_map puts the "
                                    "expert in slots {}",
                                    id_list(listed), id_list(expected)));
  }
}

}  // namespace

void check_vllm_replica_maps(const json& doc, int64_t num_experts, Reporter& report) {
  const json& map = doc.at("physical_to_logical_map");
  for (const char* key : {"logical_replica_count", "logical_to_physical_map"}) {
    if (!doc.contains(key)) continue;
    const json& derived = doc.at(key);
    const std::string top = std::string("/") + key;
    if (!derived.is_array() || !map.is_array() || derived.size() != map.size()) {
      report.add(top, fmt::format("expected an array of {} layers, got {}",
                                  map.is_array() ? map.size() : 0, describe(derived)));
      continue;
    }
    for (size_t layer = 0; layer < map.size(); ++layer) {
      const auto slots = slots_by_expert(map[layer], num_experts);
      const std::string lp = fmt::format("{}/{}", top, layer);
      if (!slots) continue;
      if (!derived[layer].is_array() || derived[layer].size() != static_cast<size_t>(num_experts)) {
        report.add(lp,
                   fmt::format("expected one entry per logical expert ({}), got {}", num_experts,
                               derived[layer].is_array()
                                   ? std::to_string(derived[layer].size()) + " entries"
                                   : describe(derived[layer])));
        continue;
      }
      for (size_t e = 0; e < slots->size(); ++e) {
        const json& entry = derived[layer][e];
        const std::string ep = fmt::format("{}/{}", lp, e);
        if (key == std::string("logical_to_physical_map")) {
          check_replica_entry(entry, (*slots)[e], ep, report);
        } else if (as_int(entry) != static_cast<int64_t>((*slots)[e].size())) {
          report.add(ep,
                     fmt::format("logical expert {} has {} replicas in physical_to_logical_map, "
                                 "not {}",
                                 e, (*slots)[e].size(), entry.dump()));
        }
      }
    }
  }
}

// vLLM's JSONL: one record per line; the eplb_initial_mapping record is the placement, other
// records (load statistics written to the same file) are skipped. Lines are named
// "<file>:<line>" in messages.
Placement parse_jsonl(const std::string& text, const ParseOptions& options) {
  core::ProblemList problems(core::ErrorKind::kInput);
  std::vector<std::pair<size_t, json>> records;  // line number, record
  size_t line_no = 0, start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Reporter report(fmt::format("{}:{}", options.source_name, line_no));
    try {
      json record = core::json::parse_document(line, report);
      problems.append(report.problems());
      if (!record.is_object()) {
        problems.add(fmt::format("'{}': expected a JSON object (one record per line), got {}",
                                 report.source(), describe(record)));
      } else if (record.value("record_type", json()) == "eplb_initial_mapping") {
        records.emplace_back(line_no, std::move(record));
      }
    } catch (const core::Error& error) {
      for (const auto& problem : error.problems()) problems.add(problem);
    }
  }
  if (records.size() != 1 && problems.empty()) {
    std::string lines;
    for (const auto& [number, record] : records) lines += fmt::format(" {}", number);
    problems.add(records.empty()
                     ? fmt::format("'{}': no record with \"record_type\": \"eplb_initial_mapping\"",
                                   options.source_name)
                     : fmt::format("'{}': {} eplb_initial_mapping records (lines{}); expected one",
                                   options.source_name, records.size(), lines));
  }
  problems.throw_if_any();
  Reporter report(fmt::format("{}:{}", options.source_name, records[0].first));
  const Extracted ex = extract_vllm_record(records[0].second, report);
  return finish(ex, options, report);
}

// vLLM's EplbState file (tools/eplb/benchmark_rearrange.py reads it). Besides the map it may
// carry vLLM's two derived maps, logical_replica_count [layers][experts] and
// logical_to_physical_map [layers][experts][replicas, -1 padded]: they are checked against
// the map and otherwise ignored.
Extracted extract_vllm_state(const json& doc, Reporter& report) {
  report_unknown_keys(
      doc,
      {"num_moe_layers", "num_logical_experts", "num_physical_experts", "physical_to_logical_map",
       "logical_replica_count", "logical_to_physical_map"},
      "", report);
  require(
      doc,
      {"num_moe_layers", "num_logical_experts", "num_physical_experts", "physical_to_logical_map"},
      "", report);
  Extracted ex;
  ex.form = "vLLM EPLB state";
  ex.num_layers = stated(doc, "num_moe_layers", "/num_moe_layers", report);
  ex.num_logical_experts = stated(doc, "num_logical_experts", "/num_logical_experts", report);
  ex.num_slots_per_layer = stated(doc, "num_physical_experts", "/num_physical_experts", report);
  set_array_pointers(ex, "/physical_to_logical_map");
  if (doc.contains("physical_to_logical_map")) {
    ex.map = doc.at("physical_to_logical_map");
    if (ex.num_logical_experts.value) {
      check_vllm_replica_maps(doc, *ex.num_logical_experts.value, report);
    }
  }
  return ex;
}

// One record of vLLM's JSONL mapping file (tools/eplb/generate_static_mapping.py writes it):
// {"record_type": "eplb_initial_mapping", "version": 1, "num_redundant_experts": R,
//  "num_slots": S, "initial_global_assignments": {"0": [...S ids], ...}}.
Extracted extract_vllm_record(const json& doc, Reporter& report) {
  report_unknown_keys(doc,
                      {"record_type", "version", "num_redundant_experts", "num_slots",
                       "initial_global_assignments"},
                      "", report);
  require(doc, {"version", "num_slots", "initial_global_assignments"}, "", report);
  Extracted ex;
  ex.form = "vLLM JSONL";
  if (doc.at("record_type") != "eplb_initial_mapping") {
    report.add("/record_type", fmt::format("unknown record type {} (expected "
                                           "\"eplb_initial_mapping\")",
                                           doc.at("record_type").dump()));
  }
  if (doc.contains("version") && as_int(doc.at("version")) != 1) {
    report.add("/version", fmt::format("unsupported version {} (this build reads version 1)",
                                       doc.at("version").dump()));
  }
  ex.num_slots_per_layer = stated(doc, "num_slots", "/num_slots", report);
  if (doc.contains("num_redundant_experts")) {
    const auto redundant = as_int(doc.at("num_redundant_experts"));
    if (!redundant || *redundant < 0) {
      report.add("/num_redundant_experts", fmt::format("expected a non-negative integer, got {}",
                                                       describe(doc.at("num_redundant_experts"))));
    } else if (ex.num_slots_per_layer.value) {
      // vLLM's own definition: slots = logical experts + redundant ones.
      const int64_t logical = *ex.num_slots_per_layer.value - *redundant;
      if (logical <= 0) {
        report.add("/num_redundant_experts",
                   fmt::format("num_redundant_experts {} leaves no logical experts of {} slots",
                               *redundant, *ex.num_slots_per_layer.value));
      } else {
        ex.num_logical_experts = {logical, "num_slots - num_redundant_experts",
                                  "/num_redundant_experts"};
      }
    }
  }
  set_array_pointers(ex, "/initial_global_assignments");
  if (doc.contains("initial_global_assignments")) {
    read_keyed_layers(doc.at("initial_global_assignments"), "/initial_global_assignments", ex,
                      report);
    // vLLM counts MoE layers: its keys are 0, 1, ..., not the model's layer numbers.
    for (size_t i = 0; i < ex.model_layer_ids.size(); ++i) {
      if (ex.model_layer_ids[i] != static_cast<int32_t>(i)) {
        report.add(ex.layer_pointer(i),
                   fmt::format("layer key \"{}\" is not MoE layer {}: vLLM numbers its MoE layers "
                               "0, 1, ... ({} layers: keys 0 to {})",
                               ex.model_layer_ids[i], i, ex.model_layer_ids.size(),
                               ex.model_layer_ids.size() - 1));
        break;
      }
    }
    ex.model_layer_ids.clear();
  }
  return ex;
}

}  // namespace eplb::placement::detail
