// The rebalance pipeline, narrated: load -> validate -> plan -> for each layer (read,
// verify sources, agree, exchange, fill, verify, write) -> commit.
#include "eplb/engine/rebalance.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "eplb/core/clock.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/progress.hpp"
#include "eplb/core/units.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/checkpoint_output.hpp"
#include "eplb/job/figures.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/plan/plan.hpp"
#include "inputs.hpp"
#include "layer_step.hpp"

namespace eplb::engine {
namespace {

using core::Clock;
using core::seconds_since;

}  // namespace

plan::Topology agreed_topology(const runtime::MpiSession& session, int32_t ranks_per_node,
                               int32_t num_ep_ranks) {
  const int32_t num_processes = session.size();
  if (num_ep_ranks <= 0) num_ep_ranks = num_processes;
  if (ranks_per_node > 0) return plan::Topology::blocks(num_ep_ranks, ranks_per_node);
  // NOTE: every process must plan with the same topology or their messages would not
  // match: node_of_rank() was gathered once and is the same everywhere.
  const std::vector<int32_t> nodes(session.node_of_rank().begin(), session.node_of_rank().end());
  return plan::topology_of_processes(plan::ProcessMap{num_ep_ranks, num_processes}, nodes);
}

namespace {

// The report's and -v's view of where the EP ranks ran.
void describe_topology(const runtime::MpiSession& session, const plan::Topology& topology,
                       bool from_option, const plan::PlanStats& stats, int64_t bytes_per_expert,
                       RebalanceReport& report) {
  report.process_hosts = session.hosts();
  report.ep_rank_nodes = topology.node_of_rank;
  report.nodes_from_option = from_option;
  report.inter_node_experts = stats.inter_node_experts;
  report.inter_node_bytes = stats.inter_node_experts * bytes_per_expert;
  std::string layout;
  for (size_t r = 0; r < topology.node_of_rank.size(); ++r) {
    layout += fmt::format("{}{}:{}", r == 0 ? "" : " ", r, topology.node_of_rank[r]);
  }
  std::string names;
  if (!from_option) {
    std::vector<std::string> node_names(static_cast<size_t>(session.num_nodes()));
    for (size_t p = session.hosts().size(); p-- > 0;) {
      node_names[static_cast<size_t>(session.node_of_rank()[p])] = session.hosts()[p];
    }
    for (size_t n = 0; n < node_names.size(); ++n) {
      names += fmt::format("{}{} {}", n == 0 ? " (" : ", ", n, node_names[n]);
    }
    names += ")";
  }
  core::log::detail("nodes from {}: {} nodes{}; EP rank:node {}; {} experts ({} B) cross nodes",
                    from_option ? "--ranks-per-node" : "the hosts MPI reports",
                    topology.num_nodes(), names, layout, stats.inter_node_experts,
                    report.inter_node_bytes);
}

// -v: what one layer's step took on rank 0: the read of this layer (done ahead, on the
// reader thread), its exchange, and the writes of earlier layers that finished meanwhile
// (writer thread). Returns the bytes read and written.
long long log_layer(int32_t layer_idx, const StepCounters& before, const StepCounters& after) {
  const long long read = after.bytes_read - before.bytes_read;
  const long long written = after.bytes_written - before.bytes_written;
  core::log::detail(
      "layer {}: read {} B in {:.3f} s, exchange sent {} B received {} B in {:.3f} s; writes "
      "finished meanwhile {} B in {:.3f} s (rank 0)",
      layer_idx, read, after.seconds_read - before.seconds_read,
      after.bytes_sent - before.bytes_sent, after.bytes_received - before.bytes_received,
      after.seconds_exchange - before.seconds_exchange, written,
      after.seconds_write - before.seconds_write);
  return read + written;
}

// -v: the transport, the staging directory and the pipeline's memory, once set up.
void log_setup(const RebalanceReport& report, const std::filesystem::path& staging,
               const PipelineDepth& depth, size_t device_bytes, size_t budget) {
  core::log::detail("{} transport and staging '{}' ready ({:.3f} s)", report.backend,
                    staging.string(), report.seconds_setup);
  core::log::detail(
      "pipeline: {} layers of old rows (read ahead) and {} of new rows (written behind), {} "
      "of host memory{} of the {} budget (rank 0)",
      depth.old_layers, depth.new_layers, core::format_bytes(static_cast<double>(depth.bytes)),
      device_bytes ? fmt::format(" and {} of device staging",
                                 core::format_bytes(static_cast<double>(device_bytes)))
                   : std::string(),
      core::format_bytes(static_cast<double>(budget)));
}

// -v: the transport's own set-up, which ran in the background (NCCL).
void log_transport_setup(const std::string& backend, const transport::SetupTimes& setup) {
  if (setup.seconds <= 0) return;
  core::log::detail(
      "{} set-up {:.3f} s in the background, the main thread held {:.3f} s of it ({}); "
      "page-locked host buffers {:.3f} s (rank 0)",
      backend, setup.seconds, setup.seconds_blocked, setup.steps, setup.seconds_host_alloc);
}

RebalanceReport reduce_report(const runtime::MpiSession& session, const LayerStepper& stepper,
                              const transport::SetupTimes& setup, RebalanceReport report) {
  const auto& depth = stepper.depth();
  const auto host = static_cast<long long>(depth.bytes);
  job::RankFigures figures;
  figures.max(report.peak_host_staging_bytes, host);
  figures.max(report.peak_staging_bytes, host + report.device_staging_bytes);
  figures.min(report.layers_read_ahead, depth.old_layers);
  figures.min(report.layers_written_behind, depth.new_layers);
  figures.max_seconds(report.seconds_transport_setup, setup.seconds);
  figures.max_seconds(report.seconds_transport_blocked, setup.seconds_blocked);
  figures.min_seconds(report.seconds_transport_hidden, setup.seconds_hidden());
  figures.max_seconds(report.seconds_host_alloc, setup.seconds_host_alloc);
  add_counters(figures, stepper.counters(), report);
  figures.reduce(session.group(), "the report's figures");
  return report;
}

}  // namespace

RebalanceReport rebalance(const runtime::MpiSession& session, const RebalanceOptions& options) {
  const auto start = Clock::now();
  RebalanceReport report;

  // Shared directories: on several hosts, every host must see rank 0's input (and its
  // output's parent, checked by job::CheckpointOutput before anything is created there).
  job::check_shared_directories(session, {{options.input, "input directory", true}});

  // Load and validate: placements, manifest, this rank's shard. All before any data moves.
  Inputs inputs = load_inputs(session, options);
  report.num_layers = inputs.old_placement.num_layers();
  core::log::detail("inputs loaded and validated: {} layers ({:.3f} s)", report.num_layers,
                    seconds_since(start));

  // Plan: every process computes the same global plan, without communicating.
  const PlannedExchange planned = plan_exchange(session, options, inputs, report);
  const plan::Topology& topology = planned.topology;
  const plan::Plan& plan = planned.plan;
  const plan::PlanStats& stats = planned.stats;
  describe_topology(session, topology, options.ranks_per_node > 0, stats,
                    static_cast<int64_t>(io::expert_bytes(inputs.tensors)), report);
  core::log::detail("planned: {} experts to move in {} messages ({:.3f} s)", report.experts_moved,
                    report.messages, report.seconds_plan);

  // Transport and output: the staging directory exists only once the inputs are known good.
  // The staging budget covers host and device memory (make_disk_transport).
  const auto setup_start = Clock::now();
  DiskTransport disk = make_disk_transport(session, options, report);
  auto& transport = disk.transport;
  job::CheckpointOutput output(
      session,
      {options.output, options.force,
       io::checkpoint_space(inputs.tensors, plan.new_ep_size, report.num_layers,
                            plan.new_num_slots_per_rank),
       "the new checkpoint",
       "run\n" + inputs.input_identity + placement::to_json(inputs.new_placement), options.input});
  LayerStepper stepper(session, inputs, plan, *transport, output.staging(), output.checkpoint_id(),
                       disk.host_budget);
  report.seconds_setup = seconds_since(setup_start);
  log_setup(report, output.staging(), stepper.depth(), disk.device_bytes,
            options.staging_budget_bytes);

  // For each layer: read, verify, exchange, fill, verify, write.
  // Rank 0 shows its progress: layers move in lockstep (each ends in an agreement), so
  // its count is the job's.
  auto progress = core::Progress::for_leader("rebalance", report.num_layers, "layer");
  for (int32_t layer_idx = 0; layer_idx < report.num_layers; ++layer_idx) {
    const StepCounters before = stepper.counters();
    stepper.run_layer(layer_idx);
    progress.advance(1, log_layer(layer_idx, before, stepper.counters()));
  }
  // The last layers' writes finish here: they count too.
  const long long written_before = stepper.counters().bytes_written;
  auto my_files = stepper.finish();
  progress.advance(0, stepper.counters().bytes_written - written_before);
  progress.finish();

  // Commit: manifest last, then rename into place.
  const auto commit_start = Clock::now();
  io::Manifest manifest{inputs.tensors, inputs.new_placement, {}, {}, inputs.hugging_face};
  output.commit(my_files, std::move(manifest));
  report.seconds_commit = seconds_since(commit_start);
  core::log::detail("committed '{}' ({:.3f} s)", options.output.string(), report.seconds_commit);
  transport->close();
  const transport::SetupTimes setup = transport->setup_times();
  log_transport_setup(report.backend, setup);

  // Report: every rank's figures reduced over ranks.
  report = reduce_report(session, stepper, setup, report);
  report.seconds_total = seconds_since(start);
  return report;
}

}  // namespace eplb::engine
