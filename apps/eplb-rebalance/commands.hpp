// One file per subcommand; each registers its options on the root app and returns how to
// run it. Every rank parses the same argv (before MPI starts) and runs the same subcommand.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "eplb/core/report.hpp"
#include "eplb/placement/elastic.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::app {

// Returns the process exit code; throws core::Error for failures (caught once in main).
using RunFn = std::function<int(const runtime::MpiSession& session)>;

struct Subcommand {
  CLI::App* app = nullptr;
  RunFn run;
};

// Options every subcommand shares; main reads them before MPI starts.
struct CommonArgs {
  // --timeout: how long any wait for a peer may last, MPI start-up included (the session
  // is created with it; collectives and transports take it from there).
  double timeout_s = std::chrono::duration<double>(runtime::kDefaultTimeout).count();
};

// Adds --timeout to `app`, bound to common.timeout_s. Every subcommand that talks to
// peers calls it, so the option, its check and its default are defined here only.
void add_timeout_option(CLI::App* app, CommonArgs& common);

Subcommand add_plan_command(CLI::App& root, CommonArgs& common);       // cmd_plan.cpp
Subcommand add_run_command(CLI::App& root, CommonArgs& common);        // cmd_run.cpp
Subcommand add_generate_command(CLI::App& root, CommonArgs& common);   // cmd_generate.cpp
Subcommand add_verify_command(CLI::App& root, CommonArgs& common);     // cmd_verify.cpp
Subcommand add_bench_command(CLI::App& root, CommonArgs& common);      // cmd_bench.cpp
Subcommand add_import_command(CLI::App& root, CommonArgs& common);     // cmd_import.cpp
Subcommand add_export_command(CLI::App& root, CommonArgs& common);     // cmd_export.cpp
Subcommand add_balance_command(CLI::App& root, CommonArgs& common);    // cmd_balance.cpp
Subcommand add_placement_command(CLI::App& root, CommonArgs& common);  // cmd_placement.cpp
Subcommand add_inspect_command(CLI::App& root, CommonArgs& common);    // cmd_inspect.cpp

// The placement options `run` and `plan` share (cmd_placement.cpp).
struct PlacementArgs {
  std::string old_arg, new_arg;                           // paths or inline JSON
  int32_t ep_size = 0, old_ep_size = 0, new_ep_size = 0;  // 0: not given
  std::string rank_mapping;                               // path or inline JSON; "" not given
  bool allow_dropping_experts = false;
  std::string model_layers;  // --model-layers SPEC; "" not given
};
void add_placement_options(CLI::App& app, PlacementArgs& args);
// The options as load_pair takes them. Throws core::Error(kUsage) on contradicting sizes
// and core::Error(kInput) on a bad rank mapping.
placement::PairOptions pair_options(const PlacementArgs& args);

// The report of this process's command (docs/CLI.md "Reports"): the command adds its
// sections, main records the outcome and writes it (job_report.cpp).
core::Report& job_report();
// Adds `--json FILE` to `command`: where job_report() is written.
void add_report_option(CLI::App* command);

}  // namespace eplb::app
