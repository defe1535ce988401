// Options shared by every subcommand, defined once.
#include "commands.hpp"
#include "validators.hpp"

namespace eplb::app {

namespace {
// A deadline below 0.1 s would fire on any scheduling hiccup (docs/CLI.md).
constexpr double kMinTimeoutS = 0.1, kMaxTimeoutS = 604800;  // one week
}  // namespace

void add_timeout_option(CLI::App* app, CommonArgs& common) {
  app->add_option("--timeout", common.timeout_s,
                  "Seconds any wait for a peer may last (MPI start-up, an agreement between "
                  "ranks, an exchange) before the job is aborted with exit 4")
      ->check(seconds_between(kMinTimeoutS, kMaxTimeoutS))
      ->capture_default_str();
}

}  // namespace eplb::app
