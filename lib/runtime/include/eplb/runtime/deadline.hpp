// The one deadline facility: every wait for a peer (collectives, transport exchanges, NCCL
// set-up and teardown, MPI start-up) and every local step that can block for good (HDF5
// parsing a file's metadata) is bounded by the command's --timeout through the
// types below, with one pause policy between polls. Local: nothing here communicates.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>

#include "eplb/core/clock.hpp"
#include "eplb/core/crash.hpp"

namespace eplb::runtime {

using core::Clock;

// The default of every subcommand's --timeout (docs/CLI.md), and of TransportOptions.
inline constexpr std::chrono::milliseconds kDefaultTimeout{std::chrono::seconds(600)};

// --timeout SECONDS as a duration (rounded to milliseconds, at least 1 ms when positive);
// zero or less means no limit.
std::chrono::milliseconds timeout_from_seconds(double seconds);

// A point in time after which a wait gives up: `timeout` after construction. A zero
// timeout never expires.
class Deadline {
 public:
  explicit Deadline(std::chrono::milliseconds timeout);
  static Deadline never() { return Deadline(std::chrono::milliseconds(0)); }
  bool expired() const;
  // The moment it expires (time_point::max() when it never does).
  Clock::time_point at() const;
  std::chrono::milliseconds timeout() const { return timeout_; }
  // "30 s", "1.5 s": the configured timeout, for messages.
  std::string timeout_text() const;

 private:
  std::chrono::milliseconds timeout_;
  Clock::time_point start_;
};

// What one poll found.
enum class Poll {
  kDone,      // the wait is over
  kProgress,  // something completed, more is pending: poll again at once
  kIdle,      // nothing new
};

// The pause policy between two polls that found nothing new: yield while the wait is
// young (2 ms since the last progress: latency matters), then sleep 50 us (leave the core
// to peers on oversubscribed nodes).
class PollPause {
 public:
  void progressed() { since_ = Clock::now(); }
  void operator()() const;

 private:
  Clock::time_point since_ = Clock::now();
};

// Local: calls `step` until it reports done or `deadline` passes; returns true when done,
// false when the deadline passed first (step is then not called again). `step` returns
// bool (true: done) or Poll, and may throw. The caller turns `false` into an error that
// names the phase and the peers it waited for.
template <typename Step>
bool poll_until(Step&& step, const Deadline& deadline) {
  PollPause pause;
  for (;;) {
    Poll poll = Poll::kIdle;
    if constexpr (std::is_same_v<std::invoke_result_t<Step&>, bool>) {
      poll = step() ? Poll::kDone : Poll::kIdle;
    } else {
      poll = step();
    }
    if (poll == Poll::kDone) return true;
    if (poll == Poll::kProgress) {
      pause.progressed();
      continue;
    }
    if (deadline.expired()) return false;
    pause();
  }
}

// Local: for a blocking call that no poll can bound (MPI_Init, which may wait for every
// process of the job): runs `on_expiry` on a watchdog thread unless disarm() (or the
// destructor) comes before `deadline`. `on_expiry` must end the process: the blocked call
// cannot be interrupted.
class Watchdog {
 public:
  Watchdog(const Deadline& deadline, std::function<void()> on_expiry);
  ~Watchdog() { disarm(); }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  Watchdog(Watchdog&&) = delete;
  Watchdog& operator=(Watchdog&&) = delete;
  void disarm();

 private:
  std::mutex mutex_;
  std::condition_variable disarmed_cv_;
  bool disarmed_ = false;
  std::thread thread_;
};

// Local: bounds one step of this process that can block for good and that no poll can
// bound: HDF5 parsing a file's metadata (a damaged file can make it loop forever, a file
// system that stopped answering blocks it). A peer's timeout would misname such a stall
// ("rank 0 did not reach it"), and a job of one process would have no peer to notice. If
// the step is still running after `timeout`, the watchdog thread says what was stuck and
// ends this process with exit 4 (core::kExitComm); the launcher then ends the job. A zero
// timeout never fires. A crash during the step names it too (core::crash::Step).
class StuckGuard {
 public:
  // what: the step, as "opening 'DIR/rank-00000.h5'".
  StuckGuard(std::chrono::milliseconds timeout, std::string what);

 private:
  core::crash::Step step_;
  Watchdog watchdog_;
};

}  // namespace eplb::runtime
