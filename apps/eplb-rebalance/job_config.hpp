// Job configuration: every option may come from the command line, the environment
// (EPLB_<OPTION>, e.g. EPLB_INPUT for --input) or a TOML file (--config FILE, or
// EPLB_CONFIG), in that order of precedence, so that `mpirun eplb-rebalance --old A --new B`
// runs with the rest set once in a job script. docs/CLI.md ("Job configuration").
//
// The file is real TOML, parsed by toml++ (Debian's libtomlplusplus-dev): a malformed file
// is refused with its line and column, a duplicate key too; a value must have its option's
// type (a flag takes true or false, a count an integer, seconds a number) and one value for
// one option (no array); an unknown key or section is refused with the closest name. The
// environment's and the file's values are handed to the options *before* the command line
// is parsed, and every option keeps the last value it is given: the command line's if any,
// else the environment's, else the file's.
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
  // reversed), `path` the subcommands it names, outermost first (empty if none). Names each
  // option's variable in `--help` and hands the environment's and the config file's values
  // to the options of `root` and `path`. Throws core::Error: kInput if the config file is
  // missing or not valid TOML (line and column named), kUsage for a key or section no
  // subcommand has or a value of the wrong type.
  JobConfig(CLI::App& root, std::vector<CLI::App*> path, const std::vector<std::string>& args);

  // Local, after the parse: {"--old": {"value": "a.json", "source": "command line"}, ...}
  // for every option of root and the subcommands but --help, --version and --config;
  // source is "command line", "environment EPLB_X", "config FILE" or "default".
  nlohmann::json sources() const;

 private:
  std::vector<CLI::App*> apps_;                         // root, then the subcommands
  std::map<const CLI::Option*, std::string> injected_;  // option -> where its value came from
};

// Position in `args` after the root's own options (-q, -v, --config FILE).
size_t skip_root_options(const CLI::App& root, const std::vector<std::string>& args);

}  // namespace eplb::app
