// placeholder: implemented in a following commit
#include "commands.hpp"

namespace eplb::app {

Subcommand add_run_command(CLI::App& root) {
  auto* app = root.add_subcommand("run", "(not implemented yet)");
  return {app, [](const runtime::MpiSession&) { return 1; }};
}

}  // namespace eplb::app
