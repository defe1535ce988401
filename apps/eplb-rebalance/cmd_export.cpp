// `eplb-rebalance export`: an imported (and rebalanced) checkpoint -> a Hugging Face one.
#include <memory>

#include "commands.hpp"
#include "eplb/bench/storage_roofline.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/in_place.hpp"
#include "eplb/tools/hf_io.hpp"
#include "hf_report.hpp"

namespace eplb::app {

Subcommand add_export_command(CLI::App& root, CommonArgs& common) {
  auto options = std::make_shared<tools::ExportOptions>();
  auto roofline = std::make_shared<bool>(false);
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
  app->add_flag("--roofline", *roofline,
                "After the export, measure the storage roofline on the same filesystems and "
                "report the export's time over it (docs/CLI.md)");
  add_report_option(app);
  return {app, [options, roofline](const runtime::MpiSession& session) {
            job_report()["inputs"] = {{"checkpoint", options->checkpoint.string()},
                                      {"hf_base", options->hf_base.string()},
                                      {"output", options->output.string()}};
            // A journal left by an interrupted `run --in-place` is finished first.
            engine::finish_interrupted_update(session, options->checkpoint);
            auto report = tools::export_hf(session, *options);
            add_hf_report(report);
            core::log::info("exported {} safetensors files ({:.3f} GiB) in {:.2f} s: '{}'",
                            report.num_files, static_cast<double>(report.bytes_written) / (1 << 30),
                            report.seconds, options->output.string());
            if (*roofline) {
              // Export reads the shards' rows and the base's other tensors: as many bytes,
              // from the shards first, then the base.
              auto inputs = bench::files_under(options->checkpoint);
              for (const auto& f : bench::files_under(options->hf_base)) {
                if (f.extension() == ".safetensors") inputs.push_back(f);
              }
              add_job_roofline(session, inputs, report, options->output, "the export");
            }
            return 0;
          }};
}

}  // namespace eplb::app
