// The command line in our words: --help without CLI11's own notation, and every mistake in
// the arguments named as one plain sentence ("unknown option '--nwe'; did you mean
// '--new'?"). Local: every rank parses the same arguments and finds the same problems.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eplb::app {

// --help's option lines: a value's name as our validators and type names give it ("N",
// "FILE", "SECONDS in [0.1, 604800]", "auto|nccl|mpi"), "(required)", "(env EPLB_X)".
std::shared_ptr<CLI::Formatter> plain_formatter();

// The closest of `names` to `given` (edit distance, a swap of two neighbours counting
// one), when close enough to be a typo of it; nullopt otherwise.
std::optional<std::string> closest(std::string_view given, const std::vector<std::string>& names);

// The subcommands `args` names, outermost first (`placement convert`: both), after the
// root's own options; empty when none.
std::vector<CLI::App*> command_path(CLI::App& root, const std::vector<std::string>& args);

// Every argument the command that `args` names cannot take, one sentence each, before
// CLI11 parses them: an unknown option ("unknown option '--nwe'; did you mean '--new'?"),
// an unknown command (with the list of commands), a positional argument the command does
// not take. Empty when there is none.
std::vector<std::string> unknown_arguments(CLI::App& root, const std::vector<std::string>& args);

// A CLI11 parse error as one plain sentence in our words; `path` is the subcommands the
// arguments name (command_path).
std::string describe_parse_error(const CLI::ParseError& error, const CLI::App& root,
                                 const std::vector<CLI::App*>& path);

}  // namespace eplb::app
