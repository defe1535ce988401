// `eplb-rebalance inspect`: what a placement for a model must have, and what a checkpoint or
// a placement holds, before anything is imported or moved. Local: every rank reads the same
// files; rank 0 prints (the logger) and writes the report.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <set>

#include "commands.hpp"
#include "engine_files.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/units.hpp"
#include "eplb/hf/inspect.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/placement/placement.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

namespace log = core::log;
using nlohmann::json;
using placement::format_layer_numbers;

struct InspectArgs {
  std::filesystem::path hf_dir, checkpoint;
  std::string placement, experts, model_layers;
  int32_t ep_size = 0;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out;
  for (int64_t d : shape) out += (out.empty() ? "" : ", ") + std::to_string(d);
  return "[" + out + "]";
}

json tensors_json(const std::vector<io::TensorSpec>& specs) {
  json out = json::array();
  for (const auto& t : specs) {
    out.push_back({{"name", t.name},
                   {"dtype", io::to_string(t.dtype)},
                   {"shape", t.shape},
                   {"bytes_per_expert", t.row_bytes()}});
  }
  return out;
}

void print_tensors(const std::vector<io::TensorSpec>& specs) {
  std::string list;
  for (const auto& t : specs) {
    list += fmt::format("\n    {} {} {}", t.name, io::to_string(t.dtype), shape_text(t.shape));
  }
  log::info("  expert tensors ({}), per expert:{}", specs.size(), list);
}

json inspect_hf(const InspectArgs& args) {
  const hf::ModelSummary s = hf::inspect_model(args.hf_dir, args.experts);
  const auto& m = s.map;
  log::info("model '{}' ({}): {} hidden layers, {} MoE layers (model layers {}), {} routed experts",
            args.hf_dir.string(), m.model_type.empty() ? "--experts" : m.model_type,
            m.num_hidden_layers > 0 ? std::to_string(m.num_hidden_layers) : "?",
            m.model_layers.size(), format_layer_numbers(m.model_layers), m.num_logical_experts);
  print_tensors(m.specs());
  log::info("  bytes: {} per expert, {} per MoE layer, {} in all MoE layers ({} in {} files)",
            core::format_bytes(double(s.bytes_per_expert)),
            core::format_bytes(double(s.bytes_per_layer)),
            core::format_bytes(double(s.expert_bytes)), core::format_bytes(double(s.file_bytes)),
            s.files.size());
  log::info(
      "  a placement for it: {} layers, {} logical experts, at least {} slots per layer; "
      "numbered by model layer as --model-layers {}{}",
      m.model_layers.size(), m.num_logical_experts, m.num_logical_experts,
      placement::format_layer_spec(m.model_layers),
      m.num_hidden_layers > 0
          ? fmt::format(" (SGLang's form: {} rows, one per hidden layer)", m.num_hidden_layers)
          : "");
  return {{"path", args.hf_dir.string()},
          {"model_type", m.model_type},
          {"container", m.container},
          {"num_hidden_layers", m.num_hidden_layers},
          {"moe_layers", m.model_layers},
          {"num_moe_layers", m.model_layers.size()},
          {"num_logical_experts", m.num_logical_experts},
          {"tensors", tensors_json(m.specs())},
          {"bytes_per_expert", s.bytes_per_expert},
          {"bytes_per_layer", s.bytes_per_layer},
          {"expert_bytes", s.expert_bytes},
          {"files", s.files.size()},
          {"file_bytes", s.file_bytes}};
}

json inspect_checkpoint(const InspectArgs& args) {
  const io::Manifest m = io::load_manifest(args.checkpoint);
  const auto& p = m.placement;
  const uint64_t per_expert = io::expert_bytes(m.tensors);
  uint64_t file_bytes = 0;
  for (const auto& f : m.files) file_bytes += f.size;
  log::info(
      "checkpoint '{}': {} shards ({}), written for a placement of {} layers, ep_size {}, "
      "{} slots per rank, {} logical experts",
      args.checkpoint.string(), m.files.size(), core::format_bytes(double(file_bytes)),
      p.num_layers(), p.ep_size, p.num_slots_per_rank, p.num_logical_experts);
  json out = {{"path", args.checkpoint.string()},
              {"checkpoint_id", m.checkpoint_id},
              {"files", m.files.size()},
              {"file_bytes", file_bytes},
              {"tensors", tensors_json(m.tensors)},
              {"bytes_per_expert", per_expert},
              {"bytes_per_layer_per_shard", per_expert * uint64_t(p.num_slots_per_rank)},
              {"placement",
               {{"num_layers", p.num_layers()},
                {"ep_size", p.ep_size},
                {"num_slots_per_rank", p.num_slots_per_rank},
                {"num_logical_experts", p.num_logical_experts}}}};
  if (m.hugging_face) {
    log::info("  imported from a {} model: model layers {}",
              m.hugging_face->model_type.empty() ? "--experts" : m.hugging_face->model_type,
              format_layer_numbers(m.hugging_face->model_layers));
    out["model_type"] = m.hugging_face->model_type;
    out["moe_layers"] = m.hugging_face->model_layers;
  }
  print_tensors(m.tensors);
  log::info("  bytes: {} per slot, {} per layer of one shard",
            core::format_bytes(double(per_expert)),
            core::format_bytes(double(per_expert * uint64_t(p.num_slots_per_rank))));
  return out;
}

json inspect_placement(const InspectArgs& args,
                       const std::optional<placement::ModelLayers>& model) {
  placement::ParseOptions options;
  if (args.ep_size > 0) options.ep_size = args.ep_size;
  options.model_layers = model;
  const placement::Placement p =
      placement::load_placement_argument(args.placement, "--placement", options);
  int64_t empty = 0, missing = 0;
  for (const auto& row : p.physical_to_logical_map) {
    empty += std::count(row.begin(), row.end(), -1);
    const std::set<int32_t> held(row.begin(), row.end());
    missing += p.num_logical_experts - int64_t(held.size()) + (held.count(-1) ? 1 : 0);
  }
  log::info(
      "placement '{}': {} layers, ep_size {}, {} slots per rank ({} per layer), {} logical "
      "experts{}",
      placement::argument_name(args.placement, "--placement"), p.num_layers(), p.ep_size,
      p.num_slots_per_rank, p.num_slots(), p.num_logical_experts,
      p.model_layer_ids.empty()
          ? "; model layers not recorded"
          : fmt::format("; model layers {}", format_layer_numbers(p.model_layer_ids)));
  log::info("  {} empty slots, {} (layer, expert) pairs in no slot", empty, missing);
  return {{"num_layers", p.num_layers()},
          {"ep_size", p.ep_size},
          {"num_slots_per_rank", p.num_slots_per_rank},
          {"num_logical_experts", p.num_logical_experts},
          {"model_layer_ids", p.model_layer_ids},
          {"num_hidden_layers", p.num_hidden_layers},
          {"empty_slots", empty},
          {"experts_in_no_slot", missing}};
}

int run_inspect(const InspectArgs& args) {
  if (args.hf_dir.empty() && args.checkpoint.empty() && args.placement.empty()) {
    throw core::Error(core::ErrorKind::kUsage,
                      "inspect: give --hf DIR, --checkpoint DIR or --placement P");
  }
  json section = json::object();
  std::optional<placement::ModelLayers> model;
  if (!args.hf_dir.empty()) {
    section["hf"] = inspect_hf(args);
    model = placement::ModelLayers{section["hf"]["moe_layers"].get<std::vector<int32_t>>(),
                                   section["hf"]["num_hidden_layers"].get<int32_t>(),
                                   "--hf '" + args.hf_dir.string() + "'"};
  }
  if (!args.checkpoint.empty()) section["checkpoint"] = inspect_checkpoint(args);
  if (!args.model_layers.empty()) model = placement::parse_model_layers_spec(args.model_layers);
  if (!args.placement.empty()) section["placement"] = inspect_placement(args, model);
  job_report()["inspect"] = std::move(section);
  return core::kExitOk;
}

}  // namespace

Subcommand add_inspect_command(CLI::App& root, CommonArgs& /*common*/) {
  auto args = std::make_shared<InspectArgs>();
  auto* app = root.add_subcommand(
      "inspect",
      "Say what a model's placement must have, and what a checkpoint or placement holds");
  app->add_option("--hf", args->hf_dir,
                  "Hugging Face model directory: its MoE layers, experts, tensors and bytes")
      ->check(existing_dir());
  app->add_option("--checkpoint", args->checkpoint,
                  "Checkpoint: its shards, tensors and the placement it was written for")
      ->check(existing_dir());
  app->add_option("--placement", args->placement,
                  "Placement in any accepted form (with --hf or --model-layers, read in the "
                  "model's numbering)")
      ->check(file_or_inline_json());
  app->add_option("--experts", args->experts,
                  "With --hf: the expert tensors' container for models not detected from "
                  "config.json, as for import");
  app->add_option("--model-layers", args->model_layers,
                  "With --placement: the model's MoE layer numbers, e.g. 3-60")
      ->type_name("SPEC");
  app->add_option("--ep-size", args->ep_size, "With --placement: EP size for forms without one")
      ->check(int_between(1, INT32_MAX))
      ->type_name("N");
  add_report_option(app);
  return {app, [args](const runtime::MpiSession&) { return run_inspect(*args); }};
}

}  // namespace eplb::app
