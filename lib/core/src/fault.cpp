// Injected kill points (eplb/core/fault.hpp).
#include "eplb/core/fault.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "eplb/core/log.hpp"

namespace eplb::core::fault {

namespace {

// True when `spec` ("PHASE" or "PHASE:RANK") names this phase on this rank.
bool matches(const char* spec, std::string_view phase) {
  if (spec == nullptr || *spec == '\0') return false;
  std::string_view want(spec);
  const auto colon = want.find(':');
  if (colon != std::string_view::npos) {
    if (std::to_string(log::rank()) != want.substr(colon + 1)) return false;
    want = want.substr(0, colon);
  }
  return want == phase;
}

}  // namespace

void kill_point(std::string_view phase) {
  static const char* kill_at = std::getenv("EPLB_TEST_KILL_AT");
  static const char* stop_at = std::getenv("EPLB_TEST_STOP_AT");
  if (matches(stop_at, phase)) {
    // A test holds the process here (SIGCONT resumes it): a live run at a known moment.
    log::warn("EPLB_TEST_STOP_AT: stopped at {}", phase);
    ::kill(::getpid(), SIGSTOP);
  }
  if (!matches(kill_at, phase)) return;
  log::warn("EPLB_TEST_KILL_AT: killed at {}", phase);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace eplb::core::fault
