#include "eplb/core/log.hpp"

#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace eplb::core::log {
namespace {

struct Context {
  int rank = 0;
  int size = 1;
  std::string host;
  Level level = Level::kInfo;
  bool info_to_stderr = false;      // --json -: stdout is the report's
  std::vector<std::string> errors;  // guarded by mutex
  std::mutex mutex;
};

Context& ctx() {
  static Context c;
  return c;
}

std::string local_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

void emit(std::FILE* out, std::string_view prefix, std::string_view msg) {
  std::lock_guard lock(ctx().mutex);
  // One line per message line, each with the prefix, so interleaved ranks stay readable.
  size_t start = 0;
  while (start <= msg.size()) {
    size_t end = msg.find('\n', start);
    if (end == std::string_view::npos) end = msg.size();
    fmt::print(out, "{}{}\n", prefix, msg.substr(start, end - start));
    start = end + 1;
  }
  std::fflush(out);
}

}  // namespace

void set_context(int rank_id, int num_ranks, std::string host) {
  ctx().rank = rank_id;
  ctx().size = num_ranks;
  ctx().host = std::move(host);
}

void set_level(Level level) { ctx().level = level; }
void set_info_to_stderr(bool to_stderr) { ctx().info_to_stderr = to_stderr; }
std::FILE* info_stream() { return ctx().info_to_stderr ? stderr : stdout; }
Level level() { return ctx().level; }
int rank() { return ctx().rank; }
int size() { return ctx().size; }
bool is_leader() { return ctx().rank == 0; }

std::string rank_tag() {
  if (ctx().host.empty()) ctx().host = local_host();
  return fmt::format("[rank {}/{} {}]", ctx().rank, ctx().size, ctx().host);
}

void info_str(std::string_view msg) {
  if (is_leader() && ctx().level >= Level::kInfo) emit(info_stream(), "", msg);
}

void detail_str(std::string_view msg) {
  if (is_leader() && ctx().level >= Level::kDetail) emit(info_stream(), "", msg);
}

void warn_str(std::string_view msg) {
  emit(stderr, "eplb-rebalance: warning: " + rank_tag() + " ", msg);
}

std::vector<std::string> printed_errors() {
  std::lock_guard lock(ctx().mutex);
  return ctx().errors;
}

void error_str(std::string_view msg) {
  {
    std::lock_guard lock(ctx().mutex);
    if (ctx().errors.size() < 1000) ctx().errors.emplace_back(msg);
  }
  emit(stderr, "eplb-rebalance: error: " + rank_tag() + " ", msg);
}

}  // namespace eplb::core::log
