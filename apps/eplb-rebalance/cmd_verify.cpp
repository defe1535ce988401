// `eplb-rebalance verify`: re-read a checkpoint and check every slot.
#include <memory>

#include "commands.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/in_place.hpp"
#include "eplb/tools/verify.hpp"

namespace eplb::app {

Subcommand add_verify_command(CLI::App& root, CommonArgs& common) {
  struct Args {
    tools::VerifyOptions options;
    std::string placement;
    int32_t ep_size = 0;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  auto* app = root.add_subcommand(
      "verify", "Check every slot of a checkpoint against its checksum and the placement");
  app->add_option("--checkpoint", args->options.checkpoint, "Checkpoint directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--placement", args->placement,
                  "Placement the checkpoint must hold (default: its manifest's)");
  app->add_option("--ep-size", args->ep_size, "EP size for a bare or SGLang-form placement");
  auto* seed =
      app->add_option("--seed", args->seed, "Also compare every slot with `generate --seed` data");
  add_timeout_option(app, common);
  add_report_option(app);
  return {app, [args, seed](const runtime::MpiSession& session) {
            auto options = args->options;
            if (!args->placement.empty()) options.placement = args->placement;
            if (args->ep_size > 0) options.ep_size = args->ep_size;
            if (seed->count() > 0) options.seed = args->seed;
            job_report()["inputs"] = {{"checkpoint", options.checkpoint.string()},
                                      {"placement", args->placement}};
            // A journal left by an interrupted `run --in-place` is finished first.
            engine::finish_interrupted_update(session, options.checkpoint);
            auto report = tools::verify(session, options);
            job_report()["files"] = report.num_files;
            job_report()["slots_checked"] = report.slots_checked;
            job_report()["seconds"] = {{"total", report.seconds}};
            job_report()["bytes"] = {{"checked", report.bytes_checked}};
            job_report()["bandwidth_bytes_per_s"] = {
                {"end_to_end", report.seconds > 0
                                   ? static_cast<double>(report.bytes_checked) / report.seconds
                                   : 0.0}};
            core::log::info("verified {} shards: {} slots, {:.3f} GiB, all good ({:.2f} s)",
                            report.num_files, report.slots_checked,
                            static_cast<double>(report.bytes_checked) / (1 << 30), report.seconds);
            return 0;
          }};
}

}  // namespace eplb::app
