// placeholder: implemented in a following commit
#include "commands.hpp"

namespace eplb::app {

Subcommand add_verify_command(CLI::App& root) {
  auto* app = root.add_subcommand("verify", "(not implemented yet)");
  return {app, [](const runtime::MpiSession&) { return 1; }};
}

}  // namespace eplb::app
