// Wall-clock timing of phases, for the figures the commands print.
#pragma once

#include <chrono>

namespace eplb::core {

using Clock = std::chrono::steady_clock;

// Local: seconds elapsed since `start`.
inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace eplb::core
