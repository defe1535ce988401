#include "eplb/core/crash.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <string>

#include "eplb/core/log.hpp"

namespace eplb::core::crash {
namespace {

// Steps nest a few deep at most; deeper ones are not named (the outer one still is).
constexpr int kMaxDepth = 4;
constexpr size_t kLine = 1024;

// Written by Step on the main thread, read by the handler: each slot is complete before
// `depth` makes it visible.
std::array<std::array<char, kLine>, kMaxDepth> g_lines{};
std::atomic<int> g_depth{0};

constexpr std::array<int, 4> kSignals{SIGSEGV, SIGBUS, SIGFPE, SIGILL};
std::array<struct sigaction, kSignals.size()> g_previous{};
std::atomic<bool> g_installed{false};

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    default:
      return "a signal";
  }
}

void write_all(const char* text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

// Async-signal-safe: write(2) of text prepared in advance, then the previous handler.
void on_crash(int sig) {
  const int depth = g_depth.load();
  if (depth > 0) {
    const char* line = g_lines[static_cast<size_t>(std::min(depth, kMaxDepth) - 1)].data();
    const char* mark = std::strchr(line, '\x01');  // where the signal's name goes
    if (mark != nullptr) {
      const ssize_t unused = ::write(STDERR_FILENO, line, static_cast<size_t>(mark - line));
      (void)unused;
      write_all(signal_name(sig));
      write_all(mark + 1);
    } else {
      write_all(line);  // cut short: the step's text is in it, the signal's name is not
    }
  }
  for (size_t i = 0; i < kSignals.size(); ++i) {
    if (kSignals[i] == sig) sigaction(sig, &g_previous[i], nullptr);
  }
  // Returning re-runs the faulting instruction under the previous handler. A signal
  // sent with kill(2) does not recur: send it again.
  raise(sig);
}

}  // namespace

void install() {
  if (g_installed.exchange(true)) return;
  struct sigaction action {};
  action.sa_handler = on_crash;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_NODEFER;  // the previous handler may re-raise the same signal
  for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &action, &g_previous[i]);
}

Step::Step(std::string_view what) : depth_(g_depth.load() + 1) {
  if (depth_ <= kMaxDepth) {
    const std::string line = "eplb-rebalance: error: " + log::rank_tag() +
                             " crashed (\x01) while " + std::string(what) +
                             ": most likely a damaged file that HDF5 does not check; "
                             "otherwise a bug, please report it\n";
    auto& slot = g_lines[static_cast<size_t>(depth_ - 1)];
    const size_t n = std::min(line.size(), slot.size() - 2);
    std::memcpy(slot.data(), line.data(), n);
    if (n < line.size()) slot[n - 1] = '\n';
    slot[n] = '\0';
  }
  g_depth.store(depth_);
}

Step::~Step() { g_depth.store(depth_ - 1); }

}  // namespace eplb::core::crash
