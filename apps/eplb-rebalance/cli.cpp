#include "cli.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "eplb/core/crash.hpp"
#include "eplb/core/log.hpp"
#include "eplb/job/report_file.hpp"
#include "eplb/runtime/deadline.hpp"
#include "usage.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

namespace core = eplb::core;
namespace log = eplb::core::log;

constexpr const char* kVersion = "0.1.0";

// `eplb-rebalance [-q|-v|--config F] --old ...` means `eplb-rebalance ... run --old ...`.
std::vector<std::string> normalized_args(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const size_t at = skip_root_options(app, args);
  const bool option_next = at < args.size() && args[at].starts_with("-") && args[at] != "--help" &&
                           args[at] != "-h" && args[at] != "--version";
  if (option_next || (at == args.size() && at > 0)) {
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(at), "run");
  }
  return args;
}

// After a parse problem the --json option may not have run its callback: take its value
// from the command line or the environment as given.
void find_report_path(const std::vector<CLI::App*>& path) {
  if (path.empty() || job_report().enabled()) return;
  const CLI::Option* json = path.back()->get_option_no_throw("--json");
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
    job::write_report(job_report());
  } catch (const core::Error& e) {
    for (const auto& problem : e.problems()) log::error("{}", problem);
    if (code == core::kExitOk) return core::exit_code_for(e.kind());
  }
  return code;
}

int run_command(const runtime::MpiSession& session, const Subcommand& command) {
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

Cli::Cli()
    : app_("Rebalance sharded MoE expert weights to a new placement (MPI/NCCL).",
           "eplb-rebalance") {
  app_.formatter(plain_formatter());  // before the subcommands, which copy it
  app_.set_version_flag("--version", std::string("eplb-rebalance ") + kVersion);
  app_.require_subcommand(1);
  app_.fallthrough();  // -q, -v and --config also after the subcommand
  app_.add_option("--config", config_file_,
                  "TOML file of option values (env EPLB_CONFIG; docs/CLI.md, Job configuration)")
      ->type_name("FILE");
  app_.add_flag("-q,--quiet", quiet_, "Print errors only: no progress, no summary (wins over -v)");
  app_.add_flag("-v,--verbose", verbose_, "Also print per-phase detail (per layer for run)");
  commands_ = {
      add_run_command(app_, common_),       add_plan_command(app_, common_),
      add_generate_command(app_, common_),  add_verify_command(app_, common_),
      add_bench_command(app_, common_),     add_import_command(app_, common_),
      add_export_command(app_, common_),    add_balance_command(app_, common_),
      add_placement_command(app_, common_), add_inspect_command(app_, common_),
  };
}

void Cli::parse(int argc, char** argv) {
  std::vector<std::string> args = normalized_args(app_, argc, argv);
  path_ = command_path(app_, args);
  try {
    config_.emplace(app_, path_, args);
    // Our own check first: CLI11 would report a missing required option before the typo.
    const bool help = std::any_of(args.begin(), args.end(), [](const std::string& a) {
      return a == "--help" || a == "-h" || a == "--version";
    });
    if (const auto unknown = unknown_arguments(app_, args); !unknown.empty() && !help) {
      throw core::Error(core::ErrorKind::kUsage, unknown);
    }
    std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
    app_.parse(args);
    // A path that does not exist is an input error (exit 2), in our words.
    if (!path_.empty()) check_input_paths(*path_.front());
  } catch (const core::Error& e) {
    problem_ = e;
  } catch (const CLI::ParseError& e) {
    parse_error_ = e;  // a copy of the base: say what it was while its type is known
    if (e.get_exit_code() != 0) {
      problem_ = core::Error(core::ErrorKind::kUsage, describe_parse_error(e, app_, path_));
    }
  }
}

std::chrono::milliseconds Cli::timeout() const {
  return problem_ || parse_error_ ? runtime::kDefaultTimeout
                                  : runtime::timeout_from_seconds(common_.timeout_s);
}

int Cli::report_parse_problem(const runtime::MpiSession& session) {
  if (!problem_) {  // help and version
    if (session.rank() == 0) app_.exit(*parse_error_);
    job_report().set_path({});  // --help and --version write no report
    return core::kExitOk;
  }
  const core::Error& error = *problem_;
  if (session.rank() == 0) {  // the same on every rank: rank 0 says it
    for (const auto& problem : error.problems()) log::error("{}", problem);
    if (error.kind() == core::ErrorKind::kUsage) {
      log::error("run 'eplb-rebalance --help' or 'eplb-rebalance COMMAND --help' for usage");
    }
  }
  if (config_) job_report()["options"] = config_->sources();
  return finish_report(core::exit_code_for(error.kind()), &error);
}

int Cli::run(const runtime::MpiSession& session, int argc, char** argv) {
  log::set_context(session.rank(), session.size(), session.host());
  // After MPI_Init, whose own crash handlers then run after ours (core/crash.hpp).
  core::crash::install();
  std::string name;
  for (const CLI::App* app : path_) name += (name.empty() ? "" : " ") + app->get_name();
  job_report()["format"] = "eplb-report";
  job_report()["version"] = 1;
  job_report()["tool_version"] = kVersion;
  job_report()["command"] = name;
  job_report()["argv"] = std::vector<std::string>(argv, argv + argc);
  job_report()["processes"] = session.size();
  find_report_path(path_);
  // With the report on stdout, stdout holds only the report: every other line goes to stderr.
  if (job_report().path() == "-") log::set_info_to_stderr(true);
  if (problem_ || parse_error_) return report_parse_problem(session);
  log::set_level(quiet_ ? log::Level::kQuiet : verbose_ ? log::Level::kDetail : log::Level::kInfo);
  job_report()["options"] = config_->sources();
  for (const auto& c : commands_) {
    if (c.app->parsed()) return run_command(session, c);
  }
  return core::kExitUsage;
}

bool start_mpi(std::optional<runtime::MpiSession>& session, int* argc, char*** argv,
               std::chrono::milliseconds timeout, int& code) {
  try {
    const runtime::Deadline deadline(timeout);
    runtime::Watchdog watchdog(deadline, [deadline] { startup_timed_out(deadline); });
    maybe_stall_startup();
    session.emplace(argc, argv, timeout);
    return true;
  } catch (const core::Error& e) {  // MPI could not start: nothing to abort yet
    for (const auto& problem : e.problems()) log::error("{}", problem);
    code = core::exit_code_for(e.kind());
    return false;
  }
}

}  // namespace eplb::app
