// Process-wide logger that knows its rank, so call sites never test `rank == 0`.
//
// Local: every function here acts on the calling process only.
//   info()/detail(): printed by the leader (rank 0) only, to stdout (to stderr after
//                    set_info_to_stderr, when stdout carries a report: --json -).
//   warn()/error():  printed by every rank that calls them, to stderr, prefixed
//                    "eplb-rebalance: error: [rank 3/8 node07] ".
#pragma once

#include <fmt/format.h>

#include <cstdio>

#include <string>
#include <string_view>
#include <vector>

namespace eplb::core::log {

enum class Level { kQuiet, kInfo, kDetail };

// Sets who we are; called once after MPI start (defaults: rank 0 of 1, this host).
void set_context(int rank, int size, std::string host);
void set_level(Level level);
// Sends info() and detail() to stderr, so that stdout holds only what the command writes
// there itself (a report with --json -). Also what info_stream() returns.
void set_info_to_stderr(bool to_stderr);
// Where info() prints: stdout, or stderr after set_info_to_stderr(true).
std::FILE* info_stream();
Level level();  // kDetail with -v: messages may then carry library detail (HDF5 stacks)
int rank();
int size();
bool is_leader();
// "[rank 3/8 node07]"
std::string rank_tag();

// The error messages this process printed (without the prefix), the first 1000: what a
// report (--json) lists when the problems were printed before an agreement.
std::vector<std::string> printed_errors();

void info_str(std::string_view msg);
void detail_str(std::string_view msg);
void warn_str(std::string_view msg);
void error_str(std::string_view msg);

template <typename... A>
void info(fmt::format_string<A...> f, A&&... a) {
  info_str(fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void detail(fmt::format_string<A...> f, A&&... a) {
  detail_str(fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  warn_str(fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void error(fmt::format_string<A...> f, A&&... a) {
  error_str(fmt::format(f, std::forward<A>(a)...));
}

}  // namespace eplb::core::log
