// The command line of eplb-rebalance, main's phases: build every subcommand, parse the same
// argv on every process (options also from the environment and a config file,
// job_config.hpp), start MPI under a watchdog bounded by --timeout, then run one subcommand
// and turn the one exception that may come out of it into a message, a report (--json) and
// a documented exit code (docs/CLI.md). `eplb-rebalance --old A --new B ...` is short for
// `... run ...`.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "eplb/core/error.hpp"
#include "eplb/runtime/mpi.hpp"
#include "job_config.hpp"

namespace eplb::app {

class Cli {
 public:
  // Builds the root app and every subcommand.
  Cli();
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  // Local, before MPI starts. Parses argv; never throws: a problem with the arguments, the
  // environment or the config file is kept and reported by run() once MPI says who rank 0 is.
  void parse(int argc, char** argv);
  // --timeout as parsed (the default after a parse problem): it bounds MPI start-up too.
  std::chrono::milliseconds timeout() const;

  // Every rank, after MPI started: prints help, the version or the parse problem (rank 0),
  // or runs the subcommand; writes the report. Returns the process exit code.
  int run(const runtime::MpiSession& session, int argc, char** argv);

 private:
  int report_parse_problem(const runtime::MpiSession& session);

  CLI::App app_;
  CommonArgs common_;
  std::vector<Subcommand> commands_;
  bool quiet_ = false, verbose_ = false;
  std::string config_file_;  // read by JobConfig before the parse; here for --help
  std::vector<CLI::App*> path_;
  std::optional<JobConfig> config_;
  // What was wrong with the arguments, the environment or the config file, in our words.
  std::optional<core::Error> problem_;
  std::optional<CLI::ParseError> parse_error_;  // CLI11's, help and version included
};

// Starts MPI in `session` under a watchdog: if MPI_Init has not returned by `timeout`, says
// so and ends the process (exit 4). Returns false, after printing why, when MPI could not
// start; `code` is then the exit code.
bool start_mpi(std::optional<runtime::MpiSession>& session, int* argc, char*** argv,
               std::chrono::milliseconds timeout, int& code);

}  // namespace eplb::app
