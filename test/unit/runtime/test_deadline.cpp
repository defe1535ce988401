// The deadline facility (runtime/deadline.hpp): one Deadline, one poll loop, one watchdog.
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <thread>

#include "eplb/runtime/deadline.hpp"

namespace {
namespace runtime = eplb::runtime;
using namespace std::chrono_literals;
}  // namespace

TEST_CASE("deadline: --timeout seconds to a duration") {
  CHECK(runtime::timeout_from_seconds(3) == 3000ms);
  CHECK(runtime::timeout_from_seconds(1.5) == 1500ms);
  CHECK(runtime::timeout_from_seconds(1e-9) == 1ms);  // positive stays positive
  CHECK(runtime::timeout_from_seconds(0) == 0ms);     // no limit
  CHECK(runtime::timeout_from_seconds(-5) == 0ms);
  CHECK(runtime::timeout_from_seconds(1e300) == 0ms);  // beyond what a clock holds
  CHECK(runtime::kDefaultTimeout == 600s);
}

TEST_CASE("deadline: a zero timeout never expires; others do, once") {
  const auto never = runtime::Deadline::never();
  CHECK_FALSE(never.expired());
  CHECK(never.at() == runtime::Clock::time_point::max());
  const runtime::Deadline soon(20ms);
  CHECK_FALSE(soon.expired());
  std::this_thread::sleep_for(25ms);
  CHECK(soon.expired());
  CHECK(runtime::Deadline(1500ms).timeout_text() == "1.5 s");
  CHECK(runtime::Deadline(30s).timeout_text() == "30 s");
}

TEST_CASE("deadline: poll_until stops when done, or at the deadline") {
  int calls = 0;
  CHECK(runtime::poll_until([&] { return ++calls == 3; }, runtime::Deadline(10s)));
  CHECK(calls == 3);

  calls = 0;
  const auto start = runtime::Clock::now();
  CHECK_FALSE(runtime::poll_until(
      [&] {
        ++calls;
        return false;
      },
      runtime::Deadline(30ms)));
  CHECK(runtime::Clock::now() - start >= 30ms);
  const int at_expiry = calls;
  CHECK(at_expiry > 1);

  // Progress polls again at once and still ends; a throwing step ends the wait.
  int left = 5;
  CHECK(runtime::poll_until(
      [&] { return --left == 0 ? runtime::Poll::kDone : runtime::Poll::kProgress; },
      runtime::Deadline(10s)));
  CHECK_THROWS_AS(runtime::poll_until([]() -> bool { throw std::runtime_error("peer failed"); },
                                      runtime::Deadline(10s)),
                  std::runtime_error);
}

TEST_CASE("deadline: a watchdog fires once its deadline passes, not after disarm") {
  std::atomic<int> fired = 0;
  {
    runtime::Watchdog dog(runtime::Deadline(20ms), [&] { ++fired; });
    std::this_thread::sleep_for(60ms);
  }
  CHECK(fired == 1);
  {
    runtime::Watchdog dog(runtime::Deadline(10s), [&] { ++fired; });
    dog.disarm();
  }
  {
    runtime::Watchdog forever(runtime::Deadline::never(), [&] { ++fired; });
  }
  CHECK(fired == 1);
}

// StuckGuard ends the process: each case runs in a forked child and reads its exit status.
namespace {
int child_status(const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    std::_Exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}
}  // namespace

TEST_CASE("deadline: a stuck guard ends the process with exit 4 when its step overruns") {
  const auto start = runtime::Clock::now();
  const int stuck = child_status([] {
    const runtime::StuckGuard guard(50ms, "opening 'x.h5'");
    std::this_thread::sleep_for(20s);  // the stuck step
  });
  REQUIRE(WIFEXITED(stuck));
  CHECK(WEXITSTATUS(stuck) == 4);
  CHECK(runtime::Clock::now() - start < 10s);
  const int done = child_status([] {
    { const runtime::StuckGuard guard(10s, "a quick step"); }
    {
      const runtime::StuckGuard no_limit(0ms, "no --timeout");
      std::this_thread::sleep_for(20ms);
    }
  });
  REQUIRE(WIFEXITED(done));
  CHECK(WEXITSTATUS(done) == 0);
}
