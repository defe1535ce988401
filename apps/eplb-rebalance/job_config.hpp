// Job configuration: every option may come from the command line, the environment
// (EPLB_<OPTION>, e.g. EPLB_INPUT for --input) or a TOML file (--config FILE, or
// EPLB_CONFIG), in that order of precedence, so that `mpirun eplb-rebalance --old A --new B`
// runs with the rest set once in a job script. docs/CLI.md ("Job configuration").
//
// CLI11 2.1 reads its config file before the environment, which would let a file override
// the environment; so the values of the environment and of the file (parsed by CLI11's own
// TOML reader) are handed to the options *before* the command line is parsed, and every
// option keeps the last value it is given: the command line's if any, else the
// environment's, else the file's.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace eplb::app {

// "EPLB_MAX_STAGING_BYTES" for --max-staging-bytes.
std::string env_name_for(const std::string& long_name);

class JobConfig {
 public:
  // Local, before `root.parse(args)`. `args` is the argument list as it will be parsed (not
  // reversed), `command` the subcommand it names (nullptr if none). Names each option's
  // variable in `--help` and hands the environment's and the config file's values to the
  // options of `root` and `command`. Throws core::Error: kInput if the config file named is
  // missing or not valid TOML, kUsage for a key no subcommand has.
  JobConfig(CLI::App& root, CLI::App* command, const std::vector<std::string>& args);

  // Local, after the parse: {"--old": {"value": "a.json", "source": "command line"}, ...}
  // for every option of root and command but --help, --version and --config; source is
  // "command line", "environment EPLB_X", "config FILE" or "default".
  nlohmann::json sources() const;

 private:
  CLI::App& root_;
  CLI::App* command_;
  std::map<const CLI::Option*, std::string> injected_;  // option -> where its first value came from
};

// The subcommand that `args` names: the first argument after the root's own options.
CLI::App* named_command(CLI::App& root, const std::vector<std::string>& args);

// Position in `args` after the root's own options (-q, -v, --config FILE).
size_t skip_root_options(const CLI::App& root, const std::vector<std::string>& args);

}  // namespace eplb::app
