// eplb-rebalance: move Mixture-of-Experts weights between EP ranks to a new placement.
//
// main is thin: start MPI, parse the same argv on every rank, run one subcommand, and
// turn the one exception that may come out of it into a message and a documented exit
// code (docs/CLI.md). `eplb-rebalance --old A --new B ...` is short for `... run ...`.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <optional>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/interrupt.hpp"
#include "eplb/core/log.hpp"
#include "eplb/runtime/mpi.hpp"

namespace {

namespace core = eplb::core;
namespace log = eplb::core::log;

// `eplb-rebalance --old ...` means `eplb-rebalance run --old ...`.
std::vector<std::string> normalized_args(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto at = args.begin();  // past the global flags
  while (at != args.end() &&
         (*at == "-v" || *at == "-q" || *at == "--verbose" || *at == "--quiet")) {
    ++at;
  }
  if (at != args.end() && at->starts_with("--") && *at != "--help" && *at != "--version") {
    args.insert(at, "run");
  }
  return args;
}

// A parse error as one plain sentence: an unknown command is named as such, with the list.
std::string describe_parse_error(const CLI::ParseError& e, const std::vector<std::string>& args,
                                 const std::vector<eplb::app::Subcommand>& commands) {
  std::vector<std::string> names;
  for (const auto& command : commands) names.push_back(command.app->get_name());
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  const auto first = std::find_if(args.begin(), args.end(),
                                  [](const std::string& a) { return !a.starts_with("-"); });
  if (first != args.end() && std::find(names.begin(), names.end(), *first) == names.end()) {
    return fmt::format("unknown command '{}': the commands are {}", *first, list);
  }
  if (first == args.end()) return fmt::format("no command given: the commands are {}", list);
  return e.what();
}

int run_main(const eplb::runtime::MpiSession& session, int argc, char** argv) {
  CLI::App app{"Rebalance sharded MoE expert weights to a new placement (MPI/NCCL).",
               "eplb-rebalance"};
  app.set_version_flag("--version", "eplb-rebalance 0.1.0");
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "More detail, including HDF5 error stacks");
  app.add_flag("-q,--quiet", quiet, "Errors and warnings only");
  std::vector<eplb::app::Subcommand> commands = {
      eplb::app::add_run_command(app),      eplb::app::add_plan_command(app),
      eplb::app::add_generate_command(app), eplb::app::add_verify_command(app),
      eplb::app::add_bench_command(app),
  };
  for (auto& command : commands) command.app->fallthrough();  // -v/-q after the command too
  auto args = normalized_args(argc, argv);
  const std::vector<std::string> given = args;
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    // Help and version are successes; every other parse error is a usage error, said once.
    if (e.get_exit_code() == 0) {
      if (session.rank() == 0) app.exit(e);
      return core::kExitOk;
    }
    if (session.rank() == 0) {
      log::error("{}", describe_parse_error(e, given, commands));
      log::error("run 'eplb-rebalance --help' or 'eplb-rebalance COMMAND --help' for usage");
    }
    return core::kExitUsage;
  }
  if (quiet) log::set_level(log::Level::kQuiet);
  if (verbose) log::set_level(log::Level::kDetail);
  for (auto& command : commands) {
    if (command.app->parsed()) return command.run(session);
  }
  return core::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // First, so that every thread (MPI's too) leaves SIGINT/SIGTERM to the signal thread.
  eplb::core::interrupt::install();
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
