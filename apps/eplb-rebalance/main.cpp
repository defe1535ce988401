// eplb-rebalance: move Mixture-of-Experts weights between EP ranks to a new placement.
//
// main is thin: start MPI, parse the same argv on every rank, run one subcommand, and
// turn the one exception that may come out of it into a message and a documented exit
// code (docs/CLI.md). `eplb-rebalance --old A --new B ...` is short for `... run ...`.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <optional>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/runtime/mpi.hpp"

namespace {

namespace core = eplb::core;
namespace log = eplb::core::log;

// `eplb-rebalance --old ...` means `eplb-rebalance run --old ...`.
std::vector<std::string> normalized_args(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0].starts_with("--") && args[0] != "--help" && args[0] != "--version") {
    args.insert(args.begin(), "run");
  }
  return args;
}

int run_main(const eplb::runtime::MpiSession& session, int argc, char** argv) {
  CLI::App app{"Rebalance sharded MoE expert weights to a new placement (MPI/NCCL).",
               "eplb-rebalance"};
  app.set_version_flag("--version", "eplb-rebalance 0.1.0");
  app.require_subcommand(1);
  std::vector<eplb::app::Subcommand> commands = {
      eplb::app::add_run_command(app),      eplb::app::add_plan_command(app),
      eplb::app::add_generate_command(app), eplb::app::add_verify_command(app),
      eplb::app::add_bench_command(app),    eplb::app::add_import_command(app),
      eplb::app::add_export_command(app),   eplb::app::add_balance_command(app),
      eplb::app::add_placement_command(app),
  };
  auto args = normalized_args(argc, argv);
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    // Help and version are successes; every other parse error is a usage error.
    if (session.rank() == 0) app.exit(e);
    return e.get_exit_code() == 0 ? core::kExitOk : core::kExitUsage;
  }
  for (auto& command : commands) {
    if (command.app->parsed()) return command.run(session);
  }
  return core::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<eplb::runtime::MpiSession> started;
  try {
    started.emplace(&argc, &argv);
  } catch (const core::Error& e) {  // MPI could not start: nothing to abort yet
    for (const auto& problem : e.problems()) log::error("{}", problem);
    return core::exit_code_for(e.kind());
  }
  const eplb::runtime::MpiSession& session = *started;
  log::set_context(session.rank(), session.size(), session.host());
  try {
    return run_main(session, argc, argv);
  } catch (const core::Error& e) {
    if (!e.reported()) {
      for (const auto& problem : e.problems()) log::error("{}", problem);
    }
    // A communication failure that the ranks did not agree on may leave peers blocked
    // inside MPI or NCCL: end the whole job.
    if (e.kind() == core::ErrorKind::kComm && !e.reported() && session.size() > 1) {
      session.abort_job(core::exit_code_for(e.kind()));
    }
    return core::exit_code_for(e.kind());
  } catch (const std::exception& e) {
    log::error("internal error: {}", e.what());
    if (session.size() > 1) session.abort_job(core::kExitInternal);
    return core::kExitInternal;
  }
}
