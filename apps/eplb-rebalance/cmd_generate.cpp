// placeholder: implemented in a following commit
#include "commands.hpp"

namespace eplb::app {

Subcommand add_generate_command(CLI::App& root) {
  auto* app = root.add_subcommand("generate", "(not implemented yet)");
  return {app, [](const runtime::MpiSession&) { return 1; }};
}

}  // namespace eplb::app
