// One file per subcommand; each registers its options on the root app and returns how to
// run it. Every rank parses the same argv and runs the same subcommand.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

#include "eplb/placement/elastic.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::app {

// Returns the process exit code; throws core::Error for failures (caught once in main).
using RunFn = std::function<int(const runtime::MpiSession& session)>;

struct Subcommand {
  CLI::App* app = nullptr;
  RunFn run;
};

Subcommand add_plan_command(CLI::App& root);       // cmd_plan.cpp
Subcommand add_run_command(CLI::App& root);        // cmd_run.cpp
Subcommand add_generate_command(CLI::App& root);   // cmd_generate.cpp
Subcommand add_verify_command(CLI::App& root);     // cmd_verify.cpp
Subcommand add_bench_command(CLI::App& root);      // cmd_bench.cpp
Subcommand add_import_command(CLI::App& root);     // cmd_import.cpp
Subcommand add_export_command(CLI::App& root);     // cmd_export.cpp
Subcommand add_balance_command(CLI::App& root);    // cmd_balance.cpp
Subcommand add_placement_command(CLI::App& root);  // cmd_placement.cpp

// The placement options `run` and `plan` share (cmd_placement.cpp).
struct PlacementArgs {
  std::string old_arg, new_arg;                           // paths or inline JSON
  int32_t ep_size = 0, old_ep_size = 0, new_ep_size = 0;  // 0: not given
  std::string rank_mapping;                               // path or inline JSON; "" not given
  bool allow_dropping_experts = false;
};
void add_placement_options(CLI::App& app, PlacementArgs& args);
// The options as load_pair takes them. Throws core::Error(kUsage) on contradicting sizes
// and core::Error(kInput) on a bad rank mapping.
placement::PairOptions pair_options(const PlacementArgs& args);

}  // namespace eplb::app
