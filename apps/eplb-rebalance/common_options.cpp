// Options shared by every subcommand, defined once.
#include "commands.hpp"

namespace eplb::app {

void add_timeout_option(CLI::App* app, CommonArgs& common) {
  app->add_option("--timeout", common.timeout_s,
                  "Seconds any wait for a peer may last (MPI start-up, an agreement between "
                  "ranks, an exchange) before the job is aborted with exit 4")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

}  // namespace eplb::app
