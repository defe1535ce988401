// `eplb-rebalance import`: a Hugging Face safetensors checkpoint -> our sharded checkpoint.
#include <memory>

#include "commands.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/hf_io.hpp"

namespace eplb::app {

Subcommand add_import_command(CLI::App& root, CommonArgs& common) {
  struct Args {
    engine::ImportOptions options;
    int32_t ep_size = 0;
  };
  auto args = std::make_shared<Args>();
  auto* app = root.add_subcommand(
      "import", "Shard a Hugging Face safetensors checkpoint's experts for a placement");
  add_timeout_option(app, common);
  app->add_option("--hf", args->options.hf_dir,
                  "Hugging Face model directory (config.json, *.safetensors, index)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--placement", args->options.placement, "Placement (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--output", args->options.output, "Checkpoint directory to create")->required();
  app->add_option("--experts", args->options.experts_pattern,
                  "Expert container for models not detected from config.json, with {L} for "
                  "the layer, e.g. 'model.layers.{L}.mlp.experts.' (docs/CLI.md)");
  app->add_option("--ep-size", args->ep_size, "EP size for a bare or SGLang-form placement");
  app->add_flag("--force", args->options.force, "Replace an existing output checkpoint");
  return {app, [args](const runtime::MpiSession& session) {
            auto options = args->options;
            if (args->ep_size > 0) options.ep_size = args->ep_size;
            auto report = engine::import_hf(session, options);
            core::log::info(
                "imported {} MoE layers x {} experts into {} shards, {:.3f} GiB of expert "
                "weights in {:.2f} s: '{}'",
                report.num_moe_layers, report.num_logical_experts, report.num_files,
                static_cast<double>(report.bytes_written) / (1 << 30), report.seconds,
                options.output.string());
            return 0;
          }};
}

}  // namespace eplb::app
