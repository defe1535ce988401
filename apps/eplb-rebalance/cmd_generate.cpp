// `eplb-rebalance generate`: a synthetic checkpoint for a placement.
#include <memory>

#include "commands.hpp"
#include "eplb/core/log.hpp"
#include "eplb/tools/generate.hpp"

namespace eplb::app {

Subcommand add_generate_command(CLI::App& root, CommonArgs& common) {
  struct Args {
    tools::GenerateOptions options;
    std::string tensors;
    int32_t ep_size = 0;
  };
  auto args = std::make_shared<Args>();
  auto* app = root.add_subcommand("generate", "Write a synthetic checkpoint for a placement");
  app->add_option("--placement", args->options.placement, "Placement (JSON)")->required();
  app->add_option("--output", args->options.output, "Checkpoint directory to create")->required();
  app->add_option("--tensors", args->tensors,
                  "Per-expert tensors, name:dtype:AxB..., comma separated; dtype one of " +
                      io::dtype_spellings())
      ->required();
  app->add_option("--seed", args->options.seed, "Seed of the synthetic bytes")
      ->capture_default_str();
  app->add_option("--ep-size", args->ep_size, "EP size for a bare or SGLang-form placement");
  app->add_flag("--force", args->options.force, "Replace an existing output");
  add_timeout_option(app, common);
  add_report_option(app);
  return {app, [args](const runtime::MpiSession& session) {
            auto options = args->options;
            options.tensors = io::parse_tensor_specs(args->tensors);
            if (args->ep_size > 0) options.ep_size = args->ep_size;
            job_report()["inputs"] = {{"placement", options.placement.string()},
                                      {"output", options.output.string()},
                                      {"tensors", args->tensors}};
            auto report = tools::generate(session, options);
            job_report()["files"] = report.num_files;
            job_report()["seconds"] = {{"total", report.seconds}};
            job_report()["bytes"] = {{"written", report.bytes_written}};
            job_report()["bandwidth_bytes_per_s"] = {
                {"end_to_end", report.seconds > 0
                                   ? static_cast<double>(report.bytes_written) / report.seconds
                                   : 0.0}};
            core::log::info("generated {} shards, {:.3f} GiB of expert weights in {:.2f} s: '{}'",
                            report.num_files, static_cast<double>(report.bytes_written) / (1 << 30),
                            report.seconds, options.output.string());
            return 0;
          }};
}

}  // namespace eplb::app
