// eplb-rebalance: move Mixture-of-Experts weights between EP ranks to a new placement.
//
// main is thin: parse the same argv on every process (options also from the environment and
// a config file, job_config.hpp), start MPI under a watchdog bounded by --timeout, run one
// subcommand, and turn the one exception that may come out of it into a message, a report
// (--json) and a documented exit code (docs/CLI.md). `eplb-rebalance --old A --new B ...`
// is short for `... run ...`.
#include <fmt/format.h>
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
#include "eplb/core/crash.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/interrupt.hpp"
#include "eplb/core/log.hpp"
#include "eplb/job/report_file.hpp"
#include "eplb/runtime/deadline.hpp"
#include "eplb/runtime/mpi.hpp"
#include "job_config.hpp"

namespace {

namespace core = eplb::core;
namespace log = eplb::core::log;
namespace runtime = eplb::runtime;
using eplb::app::job_report;

constexpr const char* kVersion = "0.1.0";

// `eplb-rebalance [-q|-v|--config F] --old ...` means `eplb-rebalance ... run --old ...`.
std::vector<std::string> normalized_args(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const size_t at = eplb::app::skip_root_options(app, args);
  const bool option_next = at < args.size() && args[at].starts_with("-") && args[at] != "--help" &&
                           args[at] != "-h" && args[at] != "--version";
  if (option_next || (at == args.size() && at > 0)) {
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(at), "run");
  }
  return args;
}

// A parse error as one plain sentence: an unknown command is named as such, with the list.
std::string describe_parse_error(const CLI::App& app, const CLI::ParseError& e,
                                 const std::vector<std::string>& args,
                                 const std::vector<eplb::app::Subcommand>& commands) {
  std::vector<std::string> names;
  for (const auto& command : commands) names.push_back(command.app->get_name());
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  // The command is the first word that is neither an option nor the value of a top-level
  // option that takes one (`--config job.toml verify`).
  auto first = args.begin();
  for (; first != args.end() && first->starts_with("-"); ++first) {
    const CLI::Option* option = app.get_option_no_throw(*first);
    if (option != nullptr && option->get_type_size_min() > 0 && option->get_expected_min() > 0 &&
        first + 1 != args.end())
      ++first;
  }
  if (first != args.end() && std::find(names.begin(), names.end(), *first) == names.end()) {
    return fmt::format("unknown command '{}': the commands are {}", *first, list);
  }
  if (first == args.end()) return fmt::format("no command given: the commands are {}", list);
  return e.what();
}

// After a parse error the --json option may not have run its callback: take its value
// from the command line or the environment as given.
void find_report_path(CLI::App* command) {
  if (command == nullptr || job_report().enabled()) return;
  const CLI::Option* json = command->get_option_no_throw("--json");
  if (json != nullptr && json->count() > 0) job_report().set_path(json->results().back());
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

// The report records the outcome; a report that cannot be written is an I/O error of
// its own on success, and only a message when the job failed already.
int finish_report(int code, const core::Error* error) {
  job_report().set_outcome(code, error);
  if (!job_report().root().contains("memory")) {  // `run` reports the max over ranks
    job_report()["memory"] = {{"peak_rss_bytes", core::peak_rss_bytes()}};
  }
  try {
    eplb::job::write_report(job_report());
  } catch (const core::Error& e) {
    for (const auto& problem : e.problems()) log::error("{}", problem);
    if (code == core::kExitOk) return core::exit_code_for(e.kind());
  }
  return code;
}

int run_command(const runtime::MpiSession& session, const eplb::app::Subcommand& command) {
  try {
    return finish_report(command.run(session), nullptr);
  } catch (const core::Error& e) {
    if (!e.reported()) {
      for (const auto& problem : e.problems()) log::error("{}", problem);
    }
    const int code = finish_report(core::exit_code_for(e.kind()), &e);
    // A communication failure that the ranks did not agree on may leave peers blocked
    // inside MPI or NCCL: end the whole job.
    if (e.kind() == core::ErrorKind::kComm && !e.reported() && session.size() > 1) {
      session.abort_job(code);
    }
    return code;
  } catch (const std::exception& e) {
    log::error("internal error: {}", e.what());
    const core::Error internal(core::ErrorKind::kInternal, e.what());
    finish_report(core::kExitInternal, &internal);
    if (session.size() > 1) session.abort_job(core::kExitInternal);
    return core::kExitInternal;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // First, so that every thread (MPI's too) leaves SIGINT/SIGTERM to the signal thread.
  eplb::core::interrupt::install();
  // Parse first: --timeout bounds MPI start-up too. Errors are printed once MPI says who
  // rank 0 is.
  CLI::App app{"Rebalance sharded MoE expert weights to a new placement (MPI/NCCL).",
               "eplb-rebalance"};
  app.set_version_flag("--version", std::string("eplb-rebalance ") + kVersion);
  app.require_subcommand(1);
  app.fallthrough();        // -q, -v and --config also after the subcommand
  std::string config_file;  // read by JobConfig before the parse; here for --help
  app.add_option("--config", config_file,
                 "TOML file of option values (env EPLB_CONFIG; docs/CLI.md, Job configuration)")
      ->type_name("FILE");
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "Print errors only: no progress, no summary (wins over -v)");
  app.add_flag("-v,--verbose", verbose, "Also print per-phase detail (per layer for run)");
  eplb::app::CommonArgs common;
  std::vector<eplb::app::Subcommand> commands = {
      eplb::app::add_run_command(app, common),       eplb::app::add_plan_command(app, common),
      eplb::app::add_generate_command(app, common),  eplb::app::add_verify_command(app, common),
      eplb::app::add_bench_command(app, common),     eplb::app::add_import_command(app, common),
      eplb::app::add_export_command(app, common),    eplb::app::add_balance_command(app, common),
      eplb::app::add_placement_command(app, common),
  };
  auto args = normalized_args(app, argc, argv);
  CLI::App* command = eplb::app::named_command(app, args);
  std::optional<eplb::app::JobConfig> config;
  std::optional<core::Error> config_error;
  try {
    config.emplace(app, command, args);
  } catch (const core::Error& e) {
    config_error = e;
  }
  const std::vector<std::string> given = args;
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
  std::optional<CLI::ParseError> parse_error;
  if (!config_error) {
    try {
      app.parse(args);
    } catch (const CLI::ParseError& e) {
      parse_error = e;
    }
  }
  const auto timeout = parse_error || config_error
                           ? runtime::kDefaultTimeout
                           : runtime::timeout_from_seconds(common.timeout_s);

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
  // After MPI_Init, whose own crash handlers then run after ours (core/crash.hpp).
  core::crash::install();
  job_report()["format"] = "eplb-report";
  job_report()["version"] = 1;
  job_report()["tool_version"] = kVersion;
  job_report()["command"] = command != nullptr ? command->get_name() : "";
  job_report()["argv"] = std::vector<std::string>(argv, argv + argc);
  job_report()["processes"] = session.size();

  if (config_error) {  // the same on every rank: rank 0 says it
    if (session.rank() == 0) {
      for (const auto& problem : config_error->problems()) log::error("{}", problem);
    }
    return finish_report(core::exit_code_for(config_error->kind()), &*config_error);
  }
  if (parse_error) {
    // Help and version are successes; every other parse error is a usage error, said
    // once, in one plain sentence.
    find_report_path(command);
    if (parse_error->get_exit_code() == 0) {
      if (session.rank() == 0) app.exit(*parse_error);
      job_report().set_path({});  // --help and --version write no report
      return core::kExitOk;
    }
    if (session.rank() == 0) {
      log::error("{}", describe_parse_error(app, *parse_error, given, commands));
      log::error("run 'eplb-rebalance --help' or 'eplb-rebalance COMMAND --help' for usage");
    }
    job_report()["error"] = {{"kind", core::to_string(core::ErrorKind::kUsage)},
                             {"problems", {parse_error->what()}},
                             {"reported_elsewhere", false}};
    job_report()["options"] = config->sources();
    return finish_report(core::kExitUsage, nullptr);
  }
  log::set_level(quiet ? log::Level::kQuiet : verbose ? log::Level::kDetail : log::Level::kInfo);
  job_report()["options"] = config->sources();
  for (const auto& c : commands) {
    if (c.app->parsed()) return run_command(session, c);
  }
  return core::kExitUsage;
}
