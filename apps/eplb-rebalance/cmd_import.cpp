// `eplb-rebalance import`: a Hugging Face safetensors checkpoint -> our sharded checkpoint.
#include <memory>

#include "commands.hpp"
#include "eplb/bench/storage_roofline.hpp"
#include "eplb/core/log.hpp"
#include "eplb/tools/hf_io.hpp"
#include "hf_report.hpp"

namespace eplb::app {

Subcommand add_import_command(CLI::App& root, CommonArgs& common) {
  struct Args {
    tools::ImportOptions options;
    int32_t ep_size = 0;
    bool roofline = false;
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
  app->add_flag("--roofline", args->roofline,
                "After the import, measure the storage roofline on the same filesystems and "
                "report the import's time over it (docs/CLI.md)");
  add_report_option(app);
  return {app, [args](const runtime::MpiSession& session) {
            auto options = args->options;
            if (args->ep_size > 0) options.ep_size = args->ep_size;
            job_report()["inputs"] = {{"hf", options.hf_dir.string()},
                                      {"placement", options.placement.string()},
                                      {"output", options.output.string()}};
            auto report = tools::import_hf(session, options);
            add_hf_report(report);
            core::log::info(
                "imported {} MoE layers x {} experts into {} shards, {:.3f} GiB of expert "
                "weights in {:.2f} s: '{}'",
                report.num_moe_layers, report.num_logical_experts, report.num_files,
                static_cast<double>(report.bytes_written) / (1 << 30), report.seconds,
                options.output.string());
            if (args->roofline) {
              // The bytes import read, from the HF files' filesystem; the shards' size
              // written next to the output.
              std::vector<std::filesystem::path> inputs;
              for (const auto& f : bench::files_under(options.hf_dir)) {
                if (f.extension() == ".safetensors") inputs.push_back(f);
              }
              add_job_roofline(session, inputs, report, options.output, "the import");
            }
            return 0;
          }};
}

}  // namespace eplb::app
