// `eplb-rebalance balance`: a new placement from load statistics. DeepSeek's EPLB, or with
// --old the traffic-aware placement that moves as few experts as it can at the same
// balance. Every rank computes the same placement (pure, deterministic, no communication);
// rank 0 alone prints, through the logger, and writes the output, atomically.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "engine_files.hpp"
#include "eplb/balance/balance.hpp"
#include "eplb/balance/load.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/publish.hpp"
#include "eplb/placement/placement.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

struct BalanceArgs {
  std::string load_path;
  std::string old_path;
  std::string output_path;
  balance::Config config;
  std::string load_form = "auto";
  ModelArgs model;
};

balance::LoadForm load_form(const std::string& name) {
  if (name == "logical") return balance::LoadForm::kLogical;
  if (name == "physical") return balance::LoadForm::kPhysical;
  return balance::LoadForm::kAuto;
}

struct Side {
  double balancedness = 0;       // mean over layers of mean/max GPU load
  std::optional<int64_t> moved;  // experts moved from OLD, when given
};

struct BalanceReport {
  balance::ParsedLoads loads;
  std::optional<placement::Placement> old_placement;
  placement::Placement reference, ours;
  balance::TrafficStats stats;
  Side reference_side, ours_side;
  int32_t layers_less_balanced = 0;  // ours' busiest GPU above the reference's
  double reference_ms = 0, ours_ms = 0;
};

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

Side describe(const placement::Placement& p, const BalanceReport& r) {
  Side side;
  const auto& loads = r.loads.loads;
  for (int32_t layer = 0; layer < loads.num_layers(); ++layer) {
    side.balancedness +=
        balance::balancedness(p, layer, loads.per_layer[static_cast<size_t>(layer)]);
  }
  side.balancedness /= loads.num_layers();
  if (r.old_placement) side.moved = balance::experts_moved(*r.old_placement, p);
  return side;
}

double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

BalanceReport compute(const BalanceArgs& args) {
  BalanceReport r;
  const auto model = model_layers_from(args.model);
  // Load OLD first: it folds per-slot loads and tells the two array forms apart.
  if (!args.old_path.empty()) {
    placement::ParseOptions options;
    options.source_name = args.old_path;
    options.fallback_ep_size = args.config.num_gpus;
    options.model_layers = model;
    r.old_placement = placement::load_placement(args.old_path, options);
  }
  balance::LoadOptions load_options;
  load_options.source_name = args.load_path;
  load_options.old_placement = r.old_placement ? &*r.old_placement : nullptr;
  load_options.form = load_form(args.load_form);
  load_options.model_layers = model;
  // A directory is TensorRT-LLM's expert statistic; a file any other form.
  r.loads =
      std::filesystem::is_directory(args.load_path)
          ? balance::parse_trtllm_statistic(read_trtllm_statistic(args.load_path), load_options)
          : balance::load_loads(args.load_path, load_options);
  // The reference's placement for these loads; with OLD, ours from OLD at its balance.
  auto start = std::chrono::steady_clock::now();
  r.reference = balance::rebalance_experts(r.loads.loads, args.config);
  r.reference_ms = elapsed_ms(start);
  r.ours = r.reference;
  if (r.old_placement) {
    start = std::chrono::steady_clock::now();
    r.ours = balance::rebalance_from(*r.old_placement, r.loads.loads, args.config, r.reference,
                                     &r.stats);
    r.ours_ms = elapsed_ms(start);
  }
  // The new placement records the model's layer numbering the loads or options gave.
  for (auto* p : {&r.reference, &r.ours}) {
    p->model_layer_ids = r.loads.model_layer_ids;
    p->num_hidden_layers = r.loads.num_hidden_layers;
  }
  r.reference_side = describe(r.reference, r);
  r.ours_side = describe(r.ours, r);
  for (int32_t layer = 0; layer < r.loads.loads.num_layers(); ++layer) {
    const auto& w = r.loads.loads.per_layer[static_cast<size_t>(layer)];
    if (max_of(balance::gpu_loads(r.ours, layer, w)) >
        max_of(balance::gpu_loads(r.reference, layer, w))) {
      ++r.layers_less_balanced;
    }
  }
  return r;
}

std::string moved_text(const Side& side, int64_t total_slots) {
  if (!side.moved) return "-";
  return fmt::format("{} ({:.1f}% of slots)", *side.moved,
                     100.0 * static_cast<double>(*side.moved) / static_cast<double>(total_slots));
}

void print_report(const BalanceReport& r, const BalanceArgs& args) {
  const auto& c = args.config;
  const auto& loads = r.loads.loads;
  core::log::info(
      "balance: '{}' ({}): {} layers, {} logical experts -> {} slots on {} GPUs ({} per GPU), "
      "{} groups, {} nodes ({})",
      args.load_path, r.loads.form, loads.num_layers(), loads.num_logical_experts, c.num_replicas,
      c.num_gpus, c.num_replicas / c.num_gpus, c.num_groups, c.num_nodes,
      c.hierarchical() ? "hierarchical" : "global: groups do not divide by nodes");
  const int64_t total_slots = int64_t{loads.num_layers()} * c.num_replicas;
  std::string table =
      fmt::format("{:<28} {:>12}  {}\n", "", "balancedness",
                  r.old_placement ? "experts moved from '" + args.old_path + "'" : "experts moved");
  table += fmt::format("{:<28} {:>12.4f}  {}\n", "reference (DeepSeek EPLB)",
                       r.reference_side.balancedness, moved_text(r.reference_side, total_slots));
  if (r.old_placement) {
    table += fmt::format("{:<28} {:>12.4f}  {}\n", "ours (traffic-aware)", r.ours_side.balancedness,
                         moved_text(r.ours_side, total_slots));
    const auto old_side = describe(*r.old_placement, r);
    table += fmt::format("{:<28} {:>12.4f}  {}\n", "old placement, these loads",
                         old_side.balancedness, "0");
  }
  table += "(balancedness: mean / max GPU load per layer, averaged over layers)";
  core::log::info("{}", table);
  if (r.old_placement) {
    core::log::info(
        "layers: {} unchanged, {} searched, {} regrouped, {} took the reference's layer; "
        "{} swaps, {} re-pointed replicas; layers less balanced than the reference: {}",
        r.stats.layers_unchanged, r.stats.layers_searched, r.stats.layers_regrouped,
        r.stats.layers_fallback, r.stats.swaps, r.stats.repoints, r.layers_less_balanced);
  }
  core::log::info("time: reference {:.2f} ms{}; wrote '{}' ({})", r.reference_ms,
                  r.old_placement ? fmt::format(", traffic-aware {:.2f} ms", r.ours_ms) : "",
                  args.output_path, r.old_placement ? "ours" : "the reference's");
}

nlohmann::json side_json(const Side& side, double ms) {
  nlohmann::json out = {{"balancedness", side.balancedness}, {"milliseconds", ms}};
  if (side.moved) out["experts_moved"] = *side.moved;
  return out;
}

// docs/CLI.md "Reports": the `balance` section.
void add_report(const BalanceReport& r, const BalanceArgs& args) {
  const auto& c = args.config;
  nlohmann::json section = {{"load",
                             {{"path", args.load_path},
                              {"form", r.loads.form},
                              {"num_layers", r.loads.loads.num_layers()},
                              {"num_logical_experts", r.loads.loads.num_logical_experts}}},
                            {"config",
                             {{"num_replicas", c.num_replicas},
                              {"ep_size", c.num_gpus},
                              {"num_groups", c.num_groups},
                              {"num_nodes", c.num_nodes},
                              {"hierarchical", c.hierarchical()}}},
                            {"model_layer_ids", r.loads.model_layer_ids},
                            {"reference", side_json(r.reference_side, r.reference_ms)},
                            {"written", r.old_placement ? "ours" : "reference"}};
  if (r.old_placement) {
    section["ours"] = side_json(r.ours_side, r.ours_ms);
    section["ours"]["layers_less_balanced"] = r.layers_less_balanced;
    section["old"] = {{"path", args.old_path},
                      {"balancedness", describe(*r.old_placement, r).balancedness}};
    section["search"] = {{"layers_unchanged", r.stats.layers_unchanged},
                         {"layers_searched", r.stats.layers_searched},
                         {"layers_regrouped", r.stats.layers_regrouped},
                         {"layers_fallback", r.stats.layers_fallback},
                         {"swaps", r.stats.swaps},
                         {"repoints", r.stats.repoints}};
  }
  job_report()["balance"] = std::move(section);
}

}  // namespace

Subcommand add_balance_command(CLI::App& root, CommonArgs& /*common*/) {
  auto args = std::make_shared<BalanceArgs>();
  auto* app = root.add_subcommand(
      "balance",
      "Make a placement from load statistics (DeepSeek EPLB; with --old, traffic-aware)");
  app->add_option("--load", args->load_path,
                  "Load statistics as an engine dumps them: vLLM's load-stats JSONL, SGLang's "
                  "recorder dump (JSON, scripts/sglang-loads-to-json.py), TensorRT-LLM's "
                  "expert statistic directory, or [layers][experts] arrays (docs/PLACEMENT.md)")
      ->required()
      ->check(existing_path())
      ->type_name("PATH");
  app->add_option("--num-replicas", args->config.num_replicas,
                  "Physical slots per layer in all, replicas included (a multiple of --ep-size)")
      ->required()
      ->check(int_between(1, 1 << 24))
      ->type_name("N");
  app->add_option("--num-groups", args->config.num_groups,
                  "Expert groups (consecutive experts; must divide the expert count)")
      ->capture_default_str()
      ->check(int_between(1, 1 << 24))
      ->type_name("N");
  app->add_option("--num-nodes", args->config.num_nodes,
                  "Nodes; groups are packed to nodes when --num-groups divides by it")
      ->capture_default_str()
      ->check(int_between(1, 1 << 24))
      ->type_name("N");
  app->add_option("--ep-size", args->config.num_gpus, "GPUs (EP ranks) of the new placement")
      ->required()
      ->check(int_between(1, 1 << 24))
      ->type_name("N");
  app->add_option("--old", args->old_path,
                  "Placement the weights are in now: start from it and move as little as "
                  "possible (traffic-aware)")
      ->check(existing_file())
      ->type_name("FILE");
  app->add_option("--load-form", args->load_form,
                  "How to read a bare load array: auto (from content), logical, physical")
      ->check(one_of({"auto", "logical", "physical"}))
      ->capture_default_str()
      ->type_name("auto|logical|physical");
  add_model_options(app, args->model);
  app->add_option("--output", args->output_path,
                  "New placement (canonical JSON), written atomically")
      ->required()
      ->type_name("FILE");
  add_report_option(app);
  return {app, [args](const runtime::MpiSession& session) {
            job_report()["inputs"] = {{"load", args->load_path}, {"output", args->output_path}};
            const BalanceReport report = compute(*args);
            print_report(report, *args);
            add_report(report, *args);
            // NOTE: one writer; every rank computed the same placement.
            if (session.rank() == 0) {
              eplb::fs::write_file_atomic(args->output_path, placement::to_json(report.ours));
            }
            return core::kExitOk;
          }};
}

}  // namespace eplb::app
