// SIGINT/SIGTERM handling (eplb/core/interrupt.hpp).
#include "eplb/core/interrupt.hpp"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <thread>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"

namespace eplb::core::interrupt {
namespace {

struct State {
  std::atomic<int> signal{0};
  std::mutex commit_mutex;    // held by critical_section()
  std::mutex cleanups_mutex;  // guards cleanups
  std::map<int, std::function<void()>> cleanups;
  int next_id = 0;
};

State& state() {
  static State s;
  return s;
}

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

void wait_for_signal() {
  const sigset_t set = handled_signals();
  int signo = 0;
  while (sigwait(&set, &signo) != 0) {
  }
  State& s = state();
  s.signal = signo;
  // A commit in progress finishes first; none starts after this point.
  std::lock_guard commit(s.commit_mutex);
  {
    std::lock_guard lock(s.cleanups_mutex);
    for (auto& [id, fn] : s.cleanups) fn();
    s.cleanups.clear();
  }
  log::error("interrupted by {}: stopping the job (exit code {}); nothing more is committed",
             signo == SIGINT ? "SIGINT" : "SIGTERM", 128 + signo);
  // Not exit(): other threads may be inside MPI or HDF5. The launcher ends the other ranks.
  ::_exit(128 + signo);
}

}  // namespace

void install() {
  const sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread(wait_for_signal).detach();
}

int received() { return state().signal.load(); }

Cleanup::Cleanup(std::function<void()> fn) {
  std::lock_guard lock(state().cleanups_mutex);
  id_ = state().next_id++;
  state().cleanups.emplace(id_, std::move(fn));
}

Cleanup::~Cleanup() {
  std::lock_guard lock(state().cleanups_mutex);
  state().cleanups.erase(id_);
}

std::unique_lock<std::mutex> critical_section() {
  std::unique_lock lock(state().commit_mutex);
  if (const int signo = received(); signo != 0) {
    throw Error(ErrorKind::kInterrupted, std::string("interrupted by ") +
                                             (signo == SIGINT ? "SIGINT" : "SIGTERM") +
                                             ": nothing was committed");
  }
  return lock;
}

}  // namespace eplb::core::interrupt
