#include "eplb/runtime/deadline.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"

namespace eplb::runtime {

std::chrono::milliseconds timeout_from_seconds(double seconds) {
  if (!(seconds > 0)) return std::chrono::milliseconds(0);
  // Beyond about 292 million years a long long of milliseconds overflows: no limit then.
  constexpr double kMaxMs = 9.2e18;
  const double ms = std::ceil(seconds * 1000.0);
  if (ms >= kMaxMs) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

Deadline::Deadline(std::chrono::milliseconds timeout) : timeout_(timeout), start_(Clock::now()) {}

bool Deadline::expired() const { return timeout_.count() > 0 && Clock::now() - start_ >= timeout_; }

Clock::time_point Deadline::at() const {
  if (timeout_.count() <= 0) return Clock::time_point::max();
  return start_ + timeout_;
}

std::string Deadline::timeout_text() const {
  return fmt::format("{:g} s", static_cast<double>(timeout_.count()) / 1000.0);
}

void PollPause::operator()() const {
  using namespace std::chrono_literals;
  if (Clock::now() - since_ < 2ms) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(50us);
  }
}

Watchdog::Watchdog(const Deadline& deadline, std::function<void()> on_expiry) {
  if (deadline.at() == Clock::time_point::max()) {
    disarmed_ = true;
    return;
  }
  thread_ = std::thread([this, at = deadline.at(), fn = std::move(on_expiry)] {
    std::unique_lock lock(mutex_);
    if (!disarmed_cv_.wait_until(lock, at, [this] { return disarmed_; })) fn();
  });
}

void Watchdog::disarm() {
  {
    std::lock_guard lock(mutex_);
    disarmed_ = true;
  }
  disarmed_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

StuckGuard::StuckGuard(std::chrono::milliseconds timeout, std::string what)
    : step_(what), watchdog_(Deadline(timeout), [timeout, what = std::move(what)] {
        core::log::error(
            "{} did not finish within --timeout {}: the file system does not answer, or "
            "HDF5 is stuck on a damaged file; ending the job",
            what, Deadline(timeout).timeout_text());
        // The stuck call cannot be interrupted, and only the main thread may call MPI
        // (MPI_THREAD_FUNNELED): end this process; the launcher ends the others.
        std::_Exit(core::kExitComm);
      }) {}

}  // namespace eplb::runtime
