// `eplb-rebalance verify`: re-read a checkpoint and check every slot.
#include <memory>

#include "commands.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/verify.hpp"

namespace eplb::app {

Subcommand add_verify_command(CLI::App& root, CommonArgs& common) {
  struct Args {
    engine::VerifyOptions options;
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
                  "Placement the checkpoint must hold (default: its manifest's)")
      ->check(CLI::ExistingFile);
  app->add_option("--ep-size", args->ep_size, "EP size for a bare or SGLang-form placement");
  auto* seed =
      app->add_option("--seed", args->seed, "Also compare every slot with `generate --seed` data");
  add_timeout_option(app, common);
  return {app, [args, seed](const runtime::MpiSession& session) {
            auto options = args->options;
            if (!args->placement.empty()) options.placement = args->placement;
            if (args->ep_size > 0) options.ep_size = args->ep_size;
            if (seed->count() > 0) options.seed = args->seed;
            auto report = engine::verify(session, options);
            core::log::info("verified {} shards: {} slots, {:.3f} GiB, all good ({:.2f} s)",
                            report.num_files, report.slots_checked,
                            static_cast<double>(report.bytes_checked) / (1 << 30), report.seconds);
            return 0;
          }};
}

}  // namespace eplb::app
