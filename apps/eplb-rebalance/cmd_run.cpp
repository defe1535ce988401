// `eplb-rebalance run` (also the default): the disk-to-disk rebalance.
#include <memory>

#include "commands.hpp"
#include "eplb/bench/storage_roofline.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/units.hpp"
#include "eplb/engine/in_place.hpp"
#include "eplb/engine/rebalance.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

struct RunArgs {
  engine::RebalanceOptions options;
  PlacementArgs placements;
  std::string backend = "auto";
  size_t max_staging_bytes = size_t{2} << 30;
  bool roofline = false;
};

// Valid range (docs/CLI.md): a staging budget below 1 MiB would split every layer into
// thousands of rounds. (--timeout's range is common_options.cpp's.)
constexpr uint64_t kMinStagingBytes = uint64_t{1} << 20, kMaxStagingBytes = uint64_t{1} << 40;

void print_report(const engine::RebalanceReport& r) {
  namespace log = core::log;
  log::info("rebalanced {} layers with the {} backend in {:.2f} s", r.num_layers, r.backend,
            r.seconds_total);
  log::info("  moved      {} experts in {} messages ({}); minimum required {} experts",
            r.experts_moved, r.messages, core::format_bytes(static_cast<double>(r.bytes_sent)),
            r.min_experts_required);
  log::info("  local      {} rows copied within a rank", r.rows_copied_locally);
  log::info("  disk       read {}, wrote {}", core::format_bytes(static_cast<double>(r.bytes_read)),
            core::format_bytes(static_cast<double>(r.bytes_written)));
  log::info(
      "  time       plan {:.3f} s, set-up {:.2f} s, read {:.2f} s, exchange {:.2f} s, write "
      "{:.2f} s (max over ranks), commit {:.2f} s",
      r.seconds_plan, r.seconds_setup, r.seconds_read, r.seconds_exchange, r.seconds_write,
      r.seconds_commit);
  if (r.seconds_transport_setup > 0) {
    log::info(
        "  set-up     {} transport {:.2f} s, {:.2f} s of it hidden behind the first reads (held "
        "the main thread {:.2f} s); host buffers allocated on the main thread in {:.2f} s",
        r.backend, r.seconds_transport_setup, r.seconds_transport_hidden,
        r.seconds_transport_blocked, r.seconds_host_alloc);
  }
  log::info("  memory     peak {} resident per process (one layer of one shard: {})",
            core::format_bytes(static_cast<double>(r.peak_rss_bytes)),
            core::format_bytes(static_cast<double>(r.layer_bytes)));
  log::info(
      "  staging    peak {} per process of the {} budget (host {}, device {}); {} layers read "
      "ahead, {} written behind",
      core::format_bytes(static_cast<double>(r.peak_staging_bytes)),
      core::format_bytes(static_cast<double>(r.staging_budget_bytes)),
      core::format_bytes(static_cast<double>(r.peak_host_staging_bytes)),
      core::format_bytes(static_cast<double>(r.device_staging_bytes)), r.layers_read_ahead,
      r.layers_written_behind);
  log::info("  verified   every written slot against the checksum of its source slot");
}

// docs/CLI.md, "Reports": the keys of `run --json`.
void add_to_job_report(const engine::RebalanceReport& r) {
  auto& j = job_report().root();
  j["backend"] = r.backend;
  j["backend_reason"] = r.backend_reason;
  j["plan"] = {{"num_layers", r.num_layers},
               {"experts_moved", r.experts_moved},
               {"min_experts_required", r.min_experts_required},
               {"messages", r.messages},
               {"rows_copied_locally", r.rows_copied_locally},
               {"inter_node_experts", r.inter_node_experts}};
  j["topology"] = {{"source", r.nodes_from_option ? "ranks-per-node" : "mpi"},
                   {"process_hosts", r.process_hosts},
                   {"ep_rank_nodes", r.ep_rank_nodes}};
  j["seconds"] = {{"total", r.seconds_total},       {"plan", r.seconds_plan},
                  {"setup", r.seconds_setup},       {"read", r.seconds_read},
                  {"exchange", r.seconds_exchange}, {"write", r.seconds_write},
                  {"commit", r.seconds_commit}};
  j["bytes"] = {{"read", r.bytes_read},   {"written", r.bytes_written},
                {"sent", r.bytes_sent},   {"busiest_rank", r.busiest_rank_bytes},
                {"layer", r.layer_bytes}, {"inter_node", r.inter_node_bytes}};
  const auto per_second = [](int64_t bytes, double seconds) {
    return seconds > 0 ? static_cast<double>(bytes) / seconds : 0.0;
  };
  j["bandwidth_bytes_per_s"] = {
      {"exchange", per_second(r.busiest_rank_bytes, r.seconds_exchange)},
      {"end_to_end", per_second(r.bytes_read + r.bytes_written, r.seconds_total)}};
  j["memory"] = {{"peak_rss_bytes", r.peak_rss_bytes},
                 {"staging_budget_bytes", r.staging_budget_bytes},
                 {"peak_staging_bytes", r.peak_staging_bytes},
                 {"peak_host_staging_bytes", r.peak_host_staging_bytes},
                 {"device_staging_bytes", r.device_staging_bytes}};
  j["transport_setup"] = {{"seconds", r.seconds_transport_setup},
                          {"blocked_seconds", r.seconds_transport_blocked},
                          {"hidden_seconds", r.seconds_transport_hidden},
                          {"host_alloc_seconds", r.seconds_host_alloc}};
  j["pipeline"] = {{"layers_read_ahead", r.layers_read_ahead},
                   {"layers_written_behind", r.layers_written_behind}};
  if (!r.in_place_phases.empty()) {
    auto& phases = j["in_place"]["seconds"];
    for (const auto& [name, seconds] : r.in_place_phases) phases[name] = seconds;
    j["in_place"]["rows_journaled"] = r.in_place_rows_journaled;
    j["in_place"]["rows_from_source"] = r.in_place_rows_from_source;
    j["in_place"]["rows_from_journaled_row"] = r.in_place_rows_from_journaled;
    j["in_place"]["bytes_journaled"] = r.in_place_bytes_journaled;
  }
}

// --roofline: the input's bytes read from its filesystem while the output's count is
// written next to the output (eplb/bench/storage_roofline.hpp).
void add_roofline(const runtime::MpiSession& session, const engine::RebalanceOptions& o,
                  double run_seconds) {
  bench::RooflineOptions ro;
  ro.read_files = bench::files_under(o.input);
  ro.write_bytes = bench::total_size(bench::files_under(o.output));
  ro.write_dir = std::filesystem::absolute(o.output).parent_path();
  const auto r = bench::measure_storage_roofline(session.group(), ro);
  bench::log_roofline(r, "the run", run_seconds);
  job_report()["roofline"] = bench::roofline_json(r, run_seconds);
}

}  // namespace

Subcommand add_run_command(CLI::App& root, CommonArgs& common) {
  auto args = std::make_shared<RunArgs>();
  auto& o = args->options;
  auto* app = root.add_subcommand(
      "run", "Rebalance a checkpoint to a new placement (the default: `eplb-rebalance --old ...`)");
  // A missing file is an input error (exit 2) found by the loaders, not a usage error.
  add_placement_options(*app, args->placements);
  app->add_option("--input", o.input, "Input checkpoint directory")->required();
  auto* output = app->add_option("--output", o.output,
                                 "Output checkpoint directory (must not exist; required unless "
                                 "--in-place)");
  auto* force = app->add_flag("--force", o.force,
                              "Replace an existing output checkpoint (a directory with "
                              "manifest.json), once the new one is complete");
  app->add_flag("--in-place", o.in_place,
                "Rewrite only the rows that change, in --input itself, through a crash-safe "
                "journal (same ep_size and slots per rank old and new)")
      ->excludes(output)
      ->excludes(force);
  app->add_flag("--check-files", o.check_files,
                "Hash every input shard whole against the manifest before moving anything (by "
                "default only shards up to 64 MiB are; sizes are always checked)");
  app->add_option("--ranks-per-node", o.ranks_per_node,
                  "EP ranks per node for sender choice, as contiguous blocks (default: each EP "
                  "rank's real host, as MPI reports it)");
  app->add_option("--backend", args->backend, "auto, nccl or mpi")
      ->check(one_of({"auto", "nccl", "mpi"}))
      ->type_name("auto|nccl|mpi")
      ->capture_default_str();
  add_timeout_option(app, common);
  app->add_option("--max-staging-bytes", args->max_staging_bytes,
                  "Memory for the pipeline's layer buffers (host) and, with NCCL, its "
                  "send/receive staging (device, half of it); more layers are read ahead and "
                  "written behind when it allows (e.g. 512MiB, 2GiB)")
      ->transform(size_between(kMinStagingBytes, kMaxStagingBytes))
      ->default_str("2GiB");
  app->add_flag("--roofline", args->roofline,
                "After the run, measure the storage roofline on the same filesystems and report "
                "the run's time over it (docs/CLI.md)");
  add_report_option(app);
  return {app, [args](const runtime::MpiSession& session) {
            auto options = args->options;
            const auto pair = pair_options(args->placements);
            options.old_placement = pair.old_arg;
            options.new_placement = pair.new_arg;
            options.old_ep_size = pair.old_ep_size;
            options.new_ep_size = pair.new_ep_size;
            options.rank_mapping = pair.rank_mapping;
            options.model_layers = pair.model_layers;
            options.allow_dropping_experts = pair.allow_dropping_experts;
            options.backend = job::parse_backend(args->backend);
            options.transport.timeout = session.timeout();
            options.staging_budget_bytes = args->max_staging_bytes;
            job_report()["inputs"] = {{"old", options.old_placement.string()},
                                      {"new", options.new_placement.string()},
                                      {"input", options.input.string()},
                                      {"output", options.output.string()}};
            if (!options.in_place && options.output.empty()) {
              throw core::Error(core::ErrorKind::kUsage,
                                "--output is required (or --in-place to update --input itself)");
            }
            if (options.in_place && args->roofline) {
              // The roofline reads all of the input and writes as much: copy mode's pattern,
              // not an in-place update's (only the changed rows move).
              throw core::Error(core::ErrorKind::kUsage,
                                "--roofline measures copy mode's storage pattern; it cannot be "
                                "combined with --in-place");
            }
            // A journal left by an interrupted --in-place run is finished first.
            const auto report = options.in_place
                                    ? engine::rebalance_in_place(session, options)
                                    : (engine::finish_interrupted_update(session, options.input),
                                       engine::rebalance(session, options));
            add_to_job_report(report);
            print_report(report);
            if (args->roofline) add_roofline(session, options, report.seconds_total);
            return 0;
          }};
}

}  // namespace eplb::app
