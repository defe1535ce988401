// `eplb-rebalance export`: an imported (and rebalanced) checkpoint -> a Hugging Face one.
#include <memory>

#include "commands.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/hf_io.hpp"
#include "eplb/engine/in_place.hpp"

namespace eplb::app {

Subcommand add_export_command(CLI::App& root, CommonArgs& common) {
  auto options = std::make_shared<engine::ExportOptions>();
  auto* app = root.add_subcommand(
      "export", "Write a Hugging Face checkpoint from an imported checkpoint and its base");
  add_timeout_option(app, common);
  app->add_option("--checkpoint", options->checkpoint, "Checkpoint made by `import` (or `run`)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--hf-base", options->hf_base,
                  "The Hugging Face directory the checkpoint was imported from")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--output", options->output, "Hugging Face directory to create")->required();
  return {app, [options](const runtime::MpiSession& session) {
            // A journal left by an interrupted `run --in-place` is finished first.
            engine::finish_interrupted_update(session, options->checkpoint);
            auto report = engine::export_hf(session, *options);
            core::log::info("exported {} safetensors files ({:.3f} GiB) in {:.2f} s: '{}'",
                            report.num_files, static_cast<double>(report.bytes_written) / (1 << 30),
                            report.seconds, options->output.string());
            return 0;
          }};
}

}  // namespace eplb::app
