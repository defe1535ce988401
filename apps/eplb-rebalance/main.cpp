// eplb-rebalance: move Mixture-of-Experts weights between EP ranks to a new placement.
//
// main is thin: parse the same argv on every process, start MPI under a watchdog bounded
// by --timeout, run one subcommand, and turn the one exception that may come out of it
// into a message and a documented exit code (docs/CLI.md). `eplb-rebalance --old A --new B
// ...` is short for `... run ...`.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/runtime/deadline.hpp"
#include "eplb/runtime/mpi.hpp"

namespace {

namespace core = eplb::core;
namespace log = eplb::core::log;
namespace runtime = eplb::runtime;

// `eplb-rebalance --old ...` means `eplb-rebalance run --old ...`.
std::vector<std::string> normalized_args(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0].starts_with("--") && args[0] != "--help" && args[0] != "--version") {
    args.insert(args.begin(), "run");
  }
  return args;
}

// This process's rank as the launcher told it, before MPI can: -1 when not started by one.
int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return -1;
}

// Fault injection for the no-hang tests (docs/CLI.md): EPLB_FAULT_STALL_STARTUP=RANK makes
// that process freeze before MPI_Init, as one stuck during start-up would.
void maybe_stall_startup() {
  const char* spec = std::getenv("EPLB_FAULT_STALL_STARTUP");
  if (spec == nullptr || std::atoi(spec) != launcher_rank()) return;
  std::fprintf(stderr, "eplb-rebalance: warning: EPLB_FAULT_STALL_STARTUP: rank %d stalls\n",
               launcher_rank());
  std::this_thread::sleep_for(std::chrono::hours(24));
}

// MPI_Init cannot be polled: if it has not returned by --timeout, say so and end this
// process (exit 4, as every timeout); mpirun then ends the others.
[[noreturn]] void startup_timed_out(const runtime::Deadline& deadline) {
  std::fprintf(stderr,
               "eplb-rebalance: error: [rank %d] MPI start-up did not finish within %s: a "
               "process of the job is stuck or did not start\n",
               launcher_rank(), deadline.timeout_text().c_str());
  std::fflush(stderr);
  std::_Exit(core::kExitComm);
}

int run_command(const runtime::MpiSession& session, const eplb::app::Subcommand& command) {
  try {
    return command.run(session);
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

}  // namespace

int main(int argc, char** argv) {
  // Parse first: --timeout bounds MPI start-up too. Errors are printed once MPI says who
  // rank 0 is.
  CLI::App app{"Rebalance sharded MoE expert weights to a new placement (MPI/NCCL).",
               "eplb-rebalance"};
  app.set_version_flag("--version", "eplb-rebalance 0.1.0");
  app.require_subcommand(1);
  eplb::app::CommonArgs common;
  std::vector<eplb::app::Subcommand> commands = {
      eplb::app::add_run_command(app, common),      eplb::app::add_plan_command(app, common),
      eplb::app::add_generate_command(app, common), eplb::app::add_verify_command(app, common),
      eplb::app::add_bench_command(app, common),    eplb::app::add_import_command(app, common),
      eplb::app::add_export_command(app, common),   eplb::app::add_balance_command(app, common),
      eplb::app::add_placement_command(app, common),
  };
  auto args = normalized_args(argc, argv);
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
  std::optional<CLI::ParseError> parse_error;
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    parse_error = e;
  }
  const auto timeout =
      parse_error ? runtime::kDefaultTimeout : runtime::timeout_from_seconds(common.timeout_s);

  std::optional<runtime::MpiSession> started;
  try {
    const runtime::Deadline deadline(timeout);
    runtime::Watchdog watchdog(deadline, [deadline] { startup_timed_out(deadline); });
    maybe_stall_startup();
    started.emplace(&argc, &argv, timeout);
  } catch (const core::Error& e) {  // MPI could not start: nothing to abort yet
    for (const auto& problem : e.problems()) log::error("{}", problem);
    return core::exit_code_for(e.kind());
  }
  const runtime::MpiSession& session = *started;
  log::set_context(session.rank(), session.size(), session.host());

  if (parse_error) {
    // Help and version are successes; every other parse error is a usage error.
    if (session.rank() == 0) app.exit(*parse_error);
    return parse_error->get_exit_code() == 0 ? core::kExitOk : core::kExitUsage;
  }
  for (const auto& command : commands) {
    if (command.app->parsed()) return run_command(session, command);
  }
  return core::kExitUsage;
}
