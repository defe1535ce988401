// vLLM's load-stats JSONL, as vLLM writes it (EPLB's write_stats_path) and reads it back
// (vllm/distributed/eplb/stats_loader.py parse_stats_jsonl and aggregate_logical_load,
// tools/eplb/generate_static_mapping.py): one eplb_load_meta record first, then
// eplb_load_stats records, each holding the step's per-slot loads [MoE layers][slots] and
// the physical_to_logical map [MoE layers][slots] they were measured under. A slot's load
// counts for the logical expert its step's map puts there; the steps are summed.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "eplb/core/error.hpp"
#include "load_detail.hpp"

namespace eplb::balance::detail {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::Reporter;
using nlohmann::json;

const std::set<std::string> kMetaKeys = {
    "record_type", "version",   "model",      "num_ranks",
    "num_groups",  "num_nodes", "num_layers", "num_redundant_experts"};
const std::set<std::string> kStatsKeys = {"record_type", "version",     "step",
                                          "num_ranks",   "expert_load", "p2l_map"};

struct Record {
  size_t line = 0;
  json value;
};

// Splits the text into records, checking their order as vLLM's reader does.
void split_records(const std::string& text, const std::string& source, std::optional<Record>& meta,
                   std::vector<Record>& stats, core::ProblemList& problems) {
  size_t line_no = 0, start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Reporter report(fmt::format("{}:{}", source, line_no));
    json record;
    try {
      record = core::json::parse_document(line, report);
    } catch (const core::Error& error) {
      for (const auto& problem : error.problems()) problems.add(problem);
      continue;
    }
    const json type = record.is_object() ? record.value("record_type", json()) : json();
    if (type == "eplb_load_meta" && meta) {
      report.add(
          "", fmt::format("a second eplb_load_meta record (the first is on line {})", meta->line));
    } else if (type == "eplb_load_meta") {
      meta = Record{line_no, record};
    } else if (type == "eplb_load_stats" && !meta) {
      report.add("", "an eplb_load_stats record before the eplb_load_meta record");
    } else if (type == "eplb_load_stats") {
      stats.push_back({line_no, record});
    } else {
      report.add(record.is_object() ? "/record_type" : "",
                 fmt::format("unexpected record {}: vLLM's load statistics hold one "
                             "eplb_load_meta record, then eplb_load_stats records",
                             record.is_object() ? type.dump() : describe(record)));
    }
    problems.append(report.problems());
  }
  if (!meta) problems.add(fmt::format("'{}': no eplb_load_meta record", source));
  if (meta && stats.empty()) problems.add(fmt::format("'{}': no eplb_load_stats records", source));
}

// A count at `key`: an integer >= `min`, or nullopt (reported; also when absent).
std::optional<int64_t> count(const json& record, const char* key, int64_t min, Reporter& report) {
  if (!record.contains(key)) {
    report.add("", fmt::format("missing required key \"{}\"", key));
    return std::nullopt;
  }
  const auto value = as_int(record.at(key));
  if (!value || *value < min || *value > std::numeric_limits<int32_t>::max()) {
    report.add(std::string("/") + key,
               fmt::format("expected an integer >= {}, got {}", min, describe(record.at(key))));
    return std::nullopt;
  }
  return value;
}

void check_common(const json& record, const std::set<std::string>& keys, Reporter& report) {
  for (const auto& [key, value] : record.items()) {
    if (!keys.contains(key)) {
      report.add(core::json::pointer_to_key(key), fmt::format("unknown key \"{}\"", key));
    }
  }
  if (as_int(record.value("version", json())) != 1) {
    report.add(record.contains("version") ? "/version" : "",
               record.contains("version")
                   ? fmt::format("unsupported version {} (this build reads version 1)",
                                 record.at("version").dump())
                   : "missing required key \"version\"");
  }
}

// A [num_layers][width] array at `key`; width 0 takes the first row's. False (reported)
// when it is not one.
bool check_grid(const json& record, const char* key, size_t num_layers, size_t& width,
                Reporter& report) {
  const std::string pointer = std::string("/") + key;
  if (!record.contains(key)) {
    report.add("", fmt::format("missing required key \"{}\"", key));
    return false;
  }
  const json& grid = record.at(key);
  if (!grid.is_array() || grid.size() != num_layers) {
    report.add(pointer,
               fmt::format("expected {} layers (eplb_load_meta's num_layers), got {}", num_layers,
                           grid.is_array() ? std::to_string(grid.size()) : describe(grid)));
    return false;
  }
  for (size_t layer = 0; layer < grid.size(); ++layer) {
    if (width == 0 && grid[layer].is_array()) width = grid[layer].size();
    if (!grid[layer].is_array() || grid[layer].size() != width || width == 0) {
      report.add(fmt::format("{}/{}", pointer, layer),
                 fmt::format("expected {} slots (as in the first layer), got {}", width,
                             grid[layer].is_array() ? std::to_string(grid[layer].size())
                                                    : describe(grid[layer])));
      return false;
    }
  }
  return true;
}

struct Meta {
  int64_t num_ranks = 1, num_layers = 1;
  std::string model;
};

Meta read_meta(const Record& meta, const std::string& source, core::ProblemList& problems) {
  Reporter report(fmt::format("{}:{}", source, meta.line));
  check_common(meta.value, kMetaKeys, report);
  Meta out;
  out.num_ranks = count(meta.value, "num_ranks", 1, report).value_or(1);
  out.num_layers = count(meta.value, "num_layers", 1, report).value_or(1);
  for (const char* key : {"num_groups", "num_nodes"}) {
    if (meta.value.contains(key)) count(meta.value, key, 1, report);
  }
  if (meta.value.contains("num_redundant_experts")) {
    count(meta.value, "num_redundant_experts", 0, report);
  }
  if (meta.value.contains("model")) {
    if (meta.value.at("model").is_string()) {
      out.model = meta.value.at("model").get<std::string>();
    } else {
      report.add("/model",
                 fmt::format("expected a string, got {}", describe(meta.value.at("model"))));
    }
  }
  problems.append(report.problems());
  return out;
}

// One stats record: its shape, steps and ids checked; the highest logical id goes to
// `max_id`. Returns whether it can be folded.
bool check_stats(const Record& rec, const Meta& meta, size_t& width, int64_t& max_id,
                 const std::string& source, core::ProblemList& problems) {
  Reporter report(fmt::format("{}:{}", source, rec.line));
  const json& r = rec.value;
  check_common(r, kStatsKeys, report);
  if (r.contains("step")) count(r, "step", 0, report);
  if (r.contains("num_ranks") && as_int(r.at("num_ranks")) != meta.num_ranks) {
    report.add("/num_ranks", fmt::format("num_ranks {} disagrees with eplb_load_meta's {}",
                                         r.at("num_ranks").dump(), meta.num_ranks));
  }
  const auto layers = static_cast<size_t>(meta.num_layers);
  bool ok = check_grid(r, "expert_load", layers, width, report);
  ok = check_grid(r, "p2l_map", layers, width, report) && ok;
  if (ok && width % static_cast<size_t>(meta.num_ranks) != 0) {
    report.add("/p2l_map",
               fmt::format("{} slots do not divide among num_ranks {}", width, meta.num_ranks));
  }
  for (size_t layer = 0; ok && layer < layers; ++layer) {
    for (size_t slot = 0; slot < width; ++slot) {
      const json& load = r["expert_load"][layer][slot];
      const auto id = as_int(r["p2l_map"][layer][slot]);
      const bool number = load.is_number() && std::isfinite(load.get<double>());
      if (!number || load.get<double>() < 0 || load.get<double>() > max_load()) {
        report.add(
            fmt::format("/expert_load/{}/{}", layer, slot),
            fmt::format("expected a load from 0 to {:g}, got {}", max_load(), describe(load)));
      } else if (!id || *id < -1 || *id > std::numeric_limits<int32_t>::max()) {
        report.add(fmt::format("/p2l_map/{}/{}", layer, slot),
                   fmt::format("expected a logical expert id or -1, got {}",
                               describe(r["p2l_map"][layer][slot])));
      } else if (*id == -1 && load.get<double>() != 0) {
        report.add(
            fmt::format("/expert_load/{}/{}", layer, slot),
            fmt::format("load {} on slot {}, which p2l_map leaves empty", load.dump(), slot));
      } else {
        max_id = std::max(max_id, *id);
      }
      if (report.problems().size() > 20) break;
    }
  }
  problems.append(report.problems());
  return report.empty();
}

}  // namespace

bool looks_like_vllm_stats(const std::string& text) {
  const size_t end = text.find('\n', text.find_first_not_of(" \t\r\n"));
  const std::string first = text.substr(0, end == std::string::npos ? text.size() : end);
  if (!json::accept(first)) return false;
  const json record = json::parse(first);
  if (!record.is_object()) return false;
  const json type = record.value("record_type", json());
  return type == "eplb_load_meta" || type == "eplb_load_stats";
}

ParsedLoads parse_vllm_stats(const std::string& text, const LoadOptions& options) {
  core::ProblemList problems(core::ErrorKind::kInput);
  std::optional<Record> meta_record;
  std::vector<Record> stats;
  split_records(text, options.source_name, meta_record, stats, problems);
  problems.throw_if_any();
  const Meta meta = read_meta(*meta_record, options.source_name, problems);
  problems.throw_if_any();
  size_t width = 0;
  int64_t max_id = -1;
  for (const Record& rec : stats)
    check_stats(rec, meta, width, max_id, options.source_name, problems);
  problems.throw_if_any();
  const placement::Placement* old_p = options.old_placement;
  const int64_t num_experts = old_p ? old_p->num_logical_experts : max_id + 1;
  if (max_id >= num_experts) {
    problems.add(
        fmt::format("'{}': p2l_map holds logical expert {}, but the old placement has {} "
                    "logical experts",
                    options.source_name, max_id, num_experts));
  }
  if (num_experts <= 0) problems.add(fmt::format("'{}': every slot is empty", options.source_name));
  problems.throw_if_any();
  ParsedLoads out;
  out.loads.num_logical_experts = static_cast<int32_t>(num_experts);
  out.loads.per_layer.assign(static_cast<size_t>(meta.num_layers),
                             std::vector<double>(static_cast<size_t>(num_experts), 0.0));
  for (const Record& rec : stats) {
    for (size_t layer = 0; layer < out.loads.per_layer.size(); ++layer) {
      for (size_t slot = 0; slot < width; ++slot) {
        const int64_t id = *as_int(rec.value["p2l_map"][layer][slot]);
        if (id >= 0) {
          out.loads.per_layer[layer][static_cast<size_t>(id)] +=
              rec.value["expert_load"][layer][slot].get<double>();
        }
      }
    }
  }
  out.form = fmt::format(
      "vLLM load statistics{}, {} step{} folded through their "
      "physical_to_logical maps",
      meta.model.empty() ? "" : " of '" + meta.model + "'", stats.size(),
      stats.size() == 1 ? "" : "s");
  Reporter report(options.source_name);
  apply_load_layers(Rows::kMoe, {}, options, "", out, report);
  report.throw_if_any();
  return out;
}

}  // namespace eplb::balance::detail
