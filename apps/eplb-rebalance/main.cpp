// eplb-rebalance: move Mixture-of-Experts weights between EP ranks to a new placement.
//
// main is thin (cli.hpp has the phases): parse the same argv on every process, start MPI
// under a watchdog bounded by --timeout, run one subcommand; the outcome becomes a message,
// a report (--json) and a documented exit code (docs/CLI.md).
#include <optional>

#include "cli.hpp"
#include "eplb/core/interrupt.hpp"

int main(int argc, char** argv) {
  // First, so that every thread (MPI's too) leaves SIGINT/SIGTERM to the signal thread.
  eplb::core::interrupt::install();
  // Parse first: --timeout bounds MPI start-up too. Problems are said once MPI says who
  // rank 0 is.
  eplb::app::Cli cli;
  cli.parse(argc, argv);
  // Start MPI; a failure to start is said by every process, nothing to abort yet.
  std::optional<eplb::runtime::MpiSession> session;
  int code = 0;
  if (!eplb::app::start_mpi(session, &argc, &argv, cli.timeout(), code)) return code;
  // Run the subcommand (or say what was wrong with the arguments), write the report.
  return cli.run(*session, argc, argv);
}
