// load_pair and vLLM's rank_mapping (eplb/placement/elastic.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/placement/elastic.hpp"

namespace eplb::placement {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::pointer_to_key;
using nlohmann::json;

// Runs `step`, moving the problems of an input error into `problems`. Returns success.
template <typename Step>
bool collect(core::ProblemList& problems, Step&& step) {
  try {
    step();
    return true;
  } catch (const core::Error& error) {
    problems.set_kind_if_worse(error.kind());
    for (const auto& problem : error.problems()) problems.add(problem);
    return false;
  }
}

}  // namespace

int32_t RankMapping::num_kept_ranks() const {
  return static_cast<int32_t>(
      std::count_if(new_rank_of.begin(), new_rank_of.end(), [](int32_t r) { return r >= 0; }));
}

RankMapping parse_rank_mapping(const std::string& text, const std::string& source_name) {
  core::json::Reporter report(source_name);
  const json doc = core::json::parse_document(text, report);
  if (!doc.is_object() || doc.empty()) {
    report.add("", fmt::format("expected vLLM's rank_mapping, an object {{\"old_rank\": new_rank "
                               "or -1}}, got {}",
                               doc.is_object() ? "an empty object" : describe(doc)));
    report.throw_if_any();
  }
  const size_t num_old = doc.size();
  RankMapping mapping{std::vector<int32_t>(num_old, -2)};  // -2: not given
  for (const auto& [key, value] : doc.items()) {
    const std::string pointer = pointer_to_key(key);
    const bool digits =
        !key.empty() && key.size() < 10 &&
        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        (key.size() == 1 || key[0] != '0');
    const auto old_rank = digits ? std::stoll(key) : -1;
    if (!digits || old_rank >= static_cast<int64_t>(num_old)) {
      report.add(pointer, fmt::format("old rank \"{}\" is not one of 0..{} (the keys must number "
                                      "the old ranks)",
                                      key, num_old - 1));
      continue;
    }
    const auto new_rank = as_int(value);
    if (!new_rank || *new_rank < -1 || *new_rank > std::numeric_limits<int32_t>::max()) {
      report.add(pointer,
                 fmt::format("expected a new rank or -1 (removed), got {}", describe(value)));
      continue;
    }
    mapping.new_rank_of[static_cast<size_t>(old_rank)] = static_cast<int32_t>(*new_rank);
  }
  std::map<int32_t, size_t> first_old_of;
  for (size_t old_rank = 0; old_rank < num_old; ++old_rank) {
    const int32_t new_rank = mapping.new_rank_of[old_rank];
    if (new_rank < 0) continue;
    const auto [it, fresh] = first_old_of.emplace(new_rank, old_rank);
    if (!fresh) {
      report.add(fmt::format("/{}", old_rank),
                 fmt::format("old ranks {} and {} both map to new rank {}", it->second, old_rank,
                             new_rank));
    }
  }
  report.throw_if_any();
  return mapping;
}

RankMapping load_rank_mapping_argument(const std::string& arg) {
  const std::string name = argument_name(arg, "--rank-mapping");
  if (is_inline_json(arg)) return parse_rank_mapping(arg, name);
  return parse_rank_mapping(core::read_input_file(arg, "rank mapping file"), name);
}

Placement apply_rank_mapping(const Placement& old_p, const Placement& new_p,
                             const RankMapping& mapping, const std::string& new_name) {
  core::ProblemList problems(core::ErrorKind::kInput);
  const int32_t num_old = mapping.num_old_ranks();
  const int32_t num_kept = mapping.num_kept_ranks();
  if (old_p.ep_size != num_old) {
    problems.add(
        fmt::format("--rank-mapping has {} old ranks, but the old placement has ep_size {}",
                    num_old, old_p.ep_size));
  }
  const bool scale_up = num_kept == num_old && new_p.ep_size > num_old;
  for (int32_t old_rank = 0; old_rank < num_old; ++old_rank) {
    const int32_t new_rank = mapping.new_rank_of[static_cast<size_t>(old_rank)];
    if (new_rank >= (scale_up ? new_p.ep_size : num_kept)) {
      problems.add(
          fmt::format("--rank-mapping maps old rank {} to new rank {}, but the new "
                      "placement has {} ranks",
                      old_rank, new_rank, scale_up ? new_p.ep_size : num_kept));
    } else if (scale_up && new_rank != old_rank) {
      problems.add(fmt::format(
          "--rank-mapping renumbers old rank {} as new rank {} while adding ranks: scale-up "
          "keeps the old ranks' numbers (map each old rank to itself)",
          old_rank, new_rank));
    }
  }
  if (!scale_up && new_p.ep_size != num_kept) {
    problems.add(fmt::format("'{}' has ep_size {}, but --rank-mapping keeps {} of {} ranks",
                             new_name, new_p.ep_size, num_kept, num_old));
  }
  if (!scale_up && new_p.num_slots_per_rank != old_p.num_slots_per_rank) {
    problems.add(
        fmt::format("'{}' has {} slots per rank, but the old placement has {}: vLLM's "
                    "rank mapping keeps the slots per rank",
                    new_name, new_p.num_slots_per_rank, old_p.num_slots_per_rank));
  }
  problems.throw_if_any();
  if (scale_up) return new_p;  // the old ranks keep their numbers: nothing to pad here
  // Scale-down or renumbering: the new map in old-rank numbering, removed ranks empty.
  Placement padded = new_p;
  padded.ep_size = num_old;
  const auto per_rank = static_cast<size_t>(new_p.num_slots_per_rank);
  for (size_t layer_idx = 0; layer_idx < new_p.physical_to_logical_map.size(); ++layer_idx) {
    const auto& row = new_p.physical_to_logical_map[layer_idx];
    std::vector<int32_t> out(static_cast<size_t>(num_old) * per_rank, -1);
    for (size_t old_rank = 0; old_rank < static_cast<size_t>(num_old); ++old_rank) {
      const int32_t new_rank = mapping.new_rank_of[old_rank];
      if (new_rank < 0) continue;
      std::copy_n(
          row.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(new_rank) * per_rank),
          per_rank, out.begin() + static_cast<std::ptrdiff_t>(old_rank * per_rank));
    }
    padded.physical_to_logical_map[layer_idx] = std::move(out);
  }
  return padded;
}

PlacementPair load_pair(const PairOptions& options) {
  PlacementPair pair;
  pair.old_name = argument_name(options.old_arg, "--old");
  pair.new_name = argument_name(options.new_arg, "--new");
  core::ProblemList problems(core::ErrorKind::kInput);
  const auto& mapping = options.rank_mapping;
  ParseOptions old_options;
  old_options.ep_size = options.old_ep_size;
  // A rank mapping names every old rank: it gives the old size as well.
  old_options.fallback_ep_size =
      mapping ? std::optional<int32_t>(mapping->num_old_ranks()) : options.checkpoint_ep_size;
  old_options.num_logical_experts = options.checkpoint_num_logical_experts;
  old_options.model_layers = options.model_layers;
  const bool old_ok = collect(problems, [&] {
    pair.old_placement = load_placement_argument(options.old_arg, "--old", old_options);
  });
  // The new placement is read with the old one's expert count (a file without one would
  // otherwise derive it from its own ids, and a new placement that does not use the
  // highest expert would get a smaller count).
  ParseOptions new_options;
  new_options.ep_size = options.new_ep_size;
  if (mapping) {
    // The new ranks are the kept ones (scale-up needs --new-ep-size or a sized form).
    new_options.fallback_ep_size = mapping->num_kept_ranks();
  } else if (old_ok) {
    new_options.fallback_ep_size = pair.old_placement.ep_size;
  } else {
    // The old file's problems are reported; do not add "pass --ep-size" for the new one.
    new_options.fallback_ep_size =
        options.old_ep_size ? options.old_ep_size : options.checkpoint_ep_size;
  }
  new_options.model_layers = options.model_layers;
  if (old_ok && !options.model_layers && !pair.old_placement.model_layer_ids.empty()) {
    new_options.model_layers =
        ModelLayers{pair.old_placement.model_layer_ids, pair.old_placement.num_hidden_layers,
                    "as '" + pair.old_name + "' records them"};
  }
  if (old_ok) {
    new_options.num_logical_experts = pair.old_placement.num_logical_experts;
  } else {
    new_options.num_logical_experts = options.checkpoint_num_logical_experts;
  }
  const bool new_ok = collect(problems, [&] {
    pair.new_placement = load_placement_argument(options.new_arg, "--new", new_options);
  });
  problems.throw_if_any();
  EPLB_ASSERT(old_ok && new_ok);
  if (mapping) {
    pair.new_placement =
        apply_rank_mapping(pair.old_placement, pair.new_placement, *mapping, pair.new_name);
  }
  for (auto& problem : check_compatible(pair.old_placement, pair.new_placement, pair.old_name,
                                        pair.new_name, {options.allow_dropping_experts})) {
    problems.add(std::move(problem));
  }
  problems.throw_if_any();
  return pair;
}

}  // namespace eplb::placement
