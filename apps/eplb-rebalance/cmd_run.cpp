// `eplb-rebalance run` (also the default): the disk-to-disk rebalance.
#include <memory>

#include "commands.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/rebalance.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

struct RunArgs {
  engine::RebalanceOptions options;
  int32_t ep_size = 0;
  std::string backend = "auto";
  double timeout_s = 600;
  size_t max_staging_bytes = size_t{2} << 30;
};

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Valid ranges (docs/CLI.md): a deadline below 0.1 s would fire on any scheduling hiccup;
// a staging budget below 1 MiB would split every layer into thousands of rounds.
constexpr double kMinTimeoutS = 0.1, kMaxTimeoutS = 604800;  // one week
constexpr uint64_t kMinStagingBytes = uint64_t{1} << 20, kMaxStagingBytes = uint64_t{1} << 40;

void print_report(const engine::RebalanceReport& r) {
  namespace log = core::log;
  const double moved_gib = static_cast<double>(r.bytes_sent) / kGiB;
  log::info("rebalanced {} layers with the {} backend in {:.2f} s", r.num_layers, r.backend,
            r.seconds_total);
  log::info("  moved      {} experts in {} messages ({:.3f} GiB); minimum required {} experts",
            r.experts_moved, r.messages, moved_gib, r.min_experts_required);
  log::info("  local      {} rows copied within a rank", r.rows_copied_locally);
  log::info("  disk       read {:.3f} GiB, wrote {:.3f} GiB",
            static_cast<double>(r.bytes_read) / kGiB, static_cast<double>(r.bytes_written) / kGiB);
  log::info(
      "  time       plan {:.3f} s, set-up {:.2f} s, read {:.2f} s, exchange {:.2f} s, write "
      "{:.2f} s (max over ranks), commit {:.2f} s",
      r.seconds_plan, r.seconds_setup, r.seconds_read, r.seconds_exchange, r.seconds_write,
      r.seconds_commit);
  log::info(
      "  memory     peak {:.3f} GiB resident per process (one layer of one shard: {:.3f} GiB)",
      static_cast<double>(r.peak_rss_bytes) / kGiB, static_cast<double>(r.layer_bytes) / kGiB);
  log::info("  verified   every written slot against the checksum of its source slot");
}

}  // namespace

Subcommand add_run_command(CLI::App& root) {
  auto args = std::make_shared<RunArgs>();
  auto& o = args->options;
  auto* app = root.add_subcommand(
      "run", "Rebalance a checkpoint to a new placement (the default: `eplb-rebalance --old ...`)");
  app->add_option("--old", o.old_placement, "Placement the input checkpoint holds (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--new", o.new_placement, "Placement to move to (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--input", o.input, "Input checkpoint directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--output", o.output, "Output checkpoint directory (must not exist)")->required();
  app->add_flag("--force", o.force,
                "Replace an existing output checkpoint (a directory with manifest.json), once "
                "the new one is complete");
  app->add_flag("--check-files", o.check_files,
                "Hash every input shard whole against the manifest before moving anything (by "
                "default only shards up to 64 MiB are; sizes are always checked)");
  app->add_option("--ep-size", args->ep_size,
                  "EP size, for placements given as a bare array or in SGLang's form");
  app->add_option("--ranks-per-node", o.ranks_per_node,
                  "EP ranks per node for sender choice (default: as MPI reports)");
  app->add_option("--backend", args->backend, "auto, nccl or mpi")
      ->check(CLI::IsMember({"auto", "nccl", "mpi"}))
      ->capture_default_str();
  app->add_option("--timeout", args->timeout_s,
                  "Seconds a layer's exchange, or any agreement between ranks, may wait for a "
                  "peer before the job is aborted")
      ->check(seconds_between(kMinTimeoutS, kMaxTimeoutS))
      ->capture_default_str();
  app->add_option("--max-staging-bytes", args->max_staging_bytes,
                  "Device memory for the NCCL backend's send/receive staging; a layer that "
                  "moves more is split into rounds (e.g. 512MiB, 2GiB)")
      ->transform(size_between(kMinStagingBytes, kMaxStagingBytes))
      ->default_str("2GiB");
  return {app, [args](const runtime::MpiSession& session) {
            auto options = args->options;
            if (args->ep_size > 0) options.ep_size = args->ep_size;
            options.backend = engine::parse_backend(args->backend);
            options.transport.timeout =
                std::chrono::milliseconds(static_cast<long long>(args->timeout_s * 1000));
            runtime::set_collective_timeout(options.transport.timeout);
            options.transport.max_staging_bytes = args->max_staging_bytes;
            print_report(engine::rebalance(session, options));
            return 0;
          }};
}

}  // namespace eplb::app
