// The one report of this process's command (`--json FILE`): commands fill it, main
// records the outcome and writes it, on success and on failure.
#include "commands.hpp"

namespace eplb::app {

core::Report& job_report() {
  static core::Report report;
  return report;
}

void add_report_option(CLI::App* command) {
  command
      ->add_option_function<std::string>(
          "--json", [](const std::string& path) { job_report().set_path(path); },
          "Write a machine-readable report to FILE ('-': stdout), on failure too (docs/CLI.md)")
      ->type_name("FILE");
}

}  // namespace eplb::app
