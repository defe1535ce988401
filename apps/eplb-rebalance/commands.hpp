// One file per subcommand; each registers its options on the root app and returns how to
// run it. Every rank parses the same argv and runs the same subcommand.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

#include "eplb/core/report.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::app {

// Returns the process exit code; throws core::Error for failures (caught once in main).
using RunFn = std::function<int(const runtime::MpiSession& session)>;

struct Subcommand {
  CLI::App* app = nullptr;
  RunFn run;
};

Subcommand add_plan_command(CLI::App& root);      // cmd_plan.cpp
Subcommand add_run_command(CLI::App& root);       // cmd_run.cpp
Subcommand add_generate_command(CLI::App& root);  // cmd_generate.cpp
Subcommand add_verify_command(CLI::App& root);    // cmd_verify.cpp
Subcommand add_bench_command(CLI::App& root);     // cmd_bench.cpp

// The report of this process's command (docs/CLI.md "Reports"): the command adds its
// sections, main records the outcome and writes it (job_report.cpp).
core::Report& job_report();
// Adds `--json FILE` to `command`: where job_report() is written.
void add_report_option(CLI::App* command);

}  // namespace eplb::app
