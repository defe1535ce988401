// `eplb-rebalance placement convert`: a placement from any accepted form into the form an
// engine reads; and the placement options `run` and `plan` share.
#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "commands.hpp"
#include "engine_files.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/publish.hpp"
#include "eplb/placement/forms.hpp"
#include "eplb/placement/placement.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

namespace fs = std::filesystem;

std::optional<int32_t> given(int32_t value) {
  return value > 0 ? std::optional<int32_t>(value) : std::nullopt;
}

struct ConvertArgs {
  std::string input, output, to;
  int32_t ep_size = 0;
  int32_t num_logical_experts = 0;
  std::string fill_empty;  // "" or a rule (placement::fill_empty_from_name)
  ModelArgs model;
  bool force = false;
};

int64_t count_empty(const placement::Placement& p) {
  int64_t n = 0;
  for (const auto& row : p.physical_to_logical_map) n += std::count(row.begin(), row.end(), -1);
  return n;
}

int run_convert(const ConvertArgs& args, const runtime::MpiSession& session) {
  const auto form = placement::form_from_name(args.to);
  EPLB_ASSERT(form);  // one_of checked the name
  job_report()["inputs"] = {{"in", placement::argument_name(args.input, "IN")},
                            {"out", args.output}};
  if (fs::exists(fs::symlink_status(args.output)) && !args.force) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("'{}' exists: pass --force to replace it", args.output));
  }
  placement::ParseOptions options;
  options.ep_size = given(args.ep_size);
  options.num_logical_experts = given(args.num_logical_experts);
  options.model_layers = model_layers_from(args.model);
  const placement::Placement p = placement::load_placement_argument(args.input, "IN", options);
  placement::WriteOptions write;
  if (!args.fill_empty.empty())
    write.fill_empty = *placement::fill_empty_from_name(args.fill_empty);
  const std::string text =
      placement::write_placement(p, *form, write, placement::argument_name(args.input, "IN"));
  std::vector<std::string> notes = placement::lost_in(p, *form);
  const int64_t num_empty = count_empty(p);
  if (num_empty > 0 && !placement::can_express_empty(*form)) {
    notes.push_back(
        fmt::format("{} empty slots filled ({}: each a replica of its layer's "
                    "expert with the fewest slots)",
                    num_empty, args.fill_empty));
  }
  for (const auto& note : notes) core::log::info("note: {}", note);
  // Every rank read and checked the input; one writes, through a temporary and a rename.
  if (session.rank() == 0) eplb::fs::write_file_atomic(args.output, text);
  core::log::info(
      "wrote '{}' ({} form): {} layers, ep_size {}, {} slots per rank, {} logical "
      "experts{}",
      args.output, args.to, p.num_layers(), p.ep_size, p.num_slots_per_rank, p.num_logical_experts,
      p.model_layer_ids.empty()
          ? ""
          : fmt::format(", model layers {}", placement::format_layer_numbers(p.model_layer_ids)));
  job_report()["convert"] = {
      {"to", args.to},
      {"num_layers", p.num_layers()},
      {"ep_size", p.ep_size},
      {"num_slots_per_rank", p.num_slots_per_rank},
      {"num_logical_experts", p.num_logical_experts},
      {"model_layer_ids", p.model_layer_ids},
      {"num_hidden_layers", p.num_hidden_layers},
      {"empty_slots_filled", placement::can_express_empty(*form) ? 0 : num_empty},
      {"notes", notes}};
  return core::kExitOk;
}

}  // namespace

void add_placement_options(CLI::App& app, PlacementArgs& args) {
  app.add_option("--old", args.old_arg,
                 "Placement the weights are in now: a file in any accepted form, or inline JSON")
      ->required()
      ->check(file_or_inline_json())
      ->type_name("FILE|JSON");
  app.add_option("--new", args.new_arg,
                 "Placement to move to: a file in any accepted form, or inline JSON "
                 "(e.g. '{\"physical_to_logical_map\": [[...]]}')")
      ->required()
      ->check(file_or_inline_json())
      ->type_name("FILE|JSON");
  app.add_option("--ep-size", args.ep_size,
                 "EP size of both placements, for forms that do not give it (SGLang, bare "
                 "array, vLLM, TensorRT-LLM)")
      ->check(int_between(1, INT32_MAX))
      ->type_name("N");
  app.add_option("--old-ep-size", args.old_ep_size,
                 "EP size of --old, for forms that do not give it")
      ->check(int_between(1, INT32_MAX))
      ->type_name("N");
  app.add_option("--new-ep-size", args.new_ep_size,
                 "EP size of --new, for forms that do not give it")
      ->check(int_between(1, INT32_MAX))
      ->type_name("N");
  app.add_option("--rank-mapping", args.rank_mapping,
                 "vLLM's elastic-EP rank_mapping {\"old_rank\": new_rank or -1}: a file or inline "
                 "JSON")
      ->check(file_or_inline_json())
      ->type_name("FILE|JSON");
  app.add_option("--model-layers", args.model_layers,
                 "The model's MoE layer numbers, e.g. 3-60, for placements numbered by model "
                 "layer (SGLang's row per hidden layer)")
      ->type_name("SPEC");
  app.add_flag("--allow-dropping-experts", args.allow_dropping_experts,
               "Accept a new placement that no longer holds some logical expert of the old one "
               "(its weights are dropped from the output)");
}

placement::PairOptions pair_options(const PlacementArgs& args) {
  core::ProblemList usage(core::ErrorKind::kUsage);
  for (const auto& [name, value] : {std::pair{"--old-ep-size", args.old_ep_size},
                                    std::pair{"--new-ep-size", args.new_ep_size}}) {
    if (args.ep_size > 0 && value > 0 && value != args.ep_size) {
      usage.add(fmt::format("--ep-size {} contradicts {} {}: --ep-size sets both sizes",
                            args.ep_size, name, value));
    }
  }
  usage.throw_if_any();
  placement::PairOptions options;
  options.old_arg = args.old_arg;
  options.new_arg = args.new_arg;
  options.old_ep_size = given(args.old_ep_size > 0 ? args.old_ep_size : args.ep_size);
  options.new_ep_size = given(args.new_ep_size > 0 ? args.new_ep_size : args.ep_size);
  if (!args.rank_mapping.empty()) {
    options.rank_mapping = placement::load_rank_mapping_argument(args.rank_mapping);
  }
  options.allow_dropping_experts = args.allow_dropping_experts;
  if (!args.model_layers.empty()) {
    options.model_layers = placement::parse_model_layers_spec(args.model_layers);
  }
  return options;
}

Subcommand add_placement_command(CLI::App& root, CommonArgs& /*common*/) {
  auto args = std::make_shared<ConvertArgs>();
  auto* app = root.add_subcommand("placement", "Work with placement files");
  app->require_subcommand(1);
  auto* convert = app->add_subcommand(
      "convert", "Write a placement (any accepted form) in the form an engine reads");
  convert->add_option("--to", args->to, "Form to write")
      ->required()
      ->check(one_of(placement::form_names()))
      ->type_name("canonical|sglang|vllm|vllm-jsonl|vllm-ascend|trtllm");
  convert->add_option("IN", args->input, "Placement: a file in any accepted form, or inline JSON")
      ->required()
      ->check(file_or_inline_json())
      ->type_name("IN");
  convert->add_option("OUT", args->output, "File to write")->required()->type_name("OUT");
  convert->add_option("--ep-size", args->ep_size, "EP size, for input forms that do not give it")
      ->check(int_between(1, INT32_MAX))
      ->type_name("N");
  convert
      ->add_option("--num-logical-experts", args->num_logical_experts,
                   "Expert count, for input forms that do not give it (default: largest id + 1)")
      ->check(int_between(1, INT32_MAX))
      ->type_name("N");
  add_model_options(convert, args->model);
  convert
      ->add_option("--fill-empty", args->fill_empty,
                   "Fill empty slots (-1) for forms that cannot express them: least-replicated "
                   "gives each a replica of its layer's expert with the fewest slots")
      ->check(one_of({"least-replicated"}))
      ->type_name("least-replicated");
  convert->add_flag("--force", args->force, "Replace an existing OUT");
  add_report_option(convert);
  return {app, [args](const runtime::MpiSession& session) { return run_convert(*args, session); }};
}

}  // namespace eplb::app
