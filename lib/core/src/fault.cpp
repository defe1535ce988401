// Injected kill points (eplb/core/fault.hpp).
#include "eplb/core/fault.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "eplb/core/log.hpp"

namespace eplb::core::fault {

void kill_point(std::string_view phase) {
  static const char* spec = std::getenv("EPLB_TEST_KILL_AT");
  if (spec == nullptr || *spec == '\0') return;
  std::string_view want(spec);
  const auto colon = want.find(':');
  if (colon != std::string_view::npos) {
    if (std::to_string(log::rank()) != want.substr(colon + 1)) return;
    want = want.substr(0, colon);
  }
  if (want != phase) return;
  log::warn("EPLB_TEST_KILL_AT: killed at {}", phase);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace eplb::core::fault
