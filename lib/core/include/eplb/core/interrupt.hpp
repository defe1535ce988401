// SIGINT and SIGTERM end the whole job cleanly (docs/RELIABILITY.md): the process that
// receives one removes what it was writing (registered clean-ups), says which signal
// stopped it, and exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
// Under mpirun or srun the launcher then ends the other ranks, which do the same. Nothing
// is committed after the signal: commit runs inside a critical section that refuses to
// start once a signal has arrived, and a signal that arrives during it waits for it.
//
// Local: acts on the calling process only.
#pragma once

#include <functional>
#include <mutex>

namespace eplb::core::interrupt {

// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread created after,
// MPI's included) and starts the thread that waits for them. Call once, first in main,
// before MPI starts.
void install();

// The signal that arrived, or 0.
int received();

// A clean-up to run when a signal arrives, for as long as the object lives. Runs on the
// signal thread, outside any critical section, at most once; must not throw.
class Cleanup {
 public:
  explicit Cleanup(std::function<void()> fn);
  ~Cleanup();
  Cleanup(const Cleanup&) = delete;
  Cleanup& operator=(const Cleanup&) = delete;

 private:
  int id_;
};

// Held while committing: throws core::Error(kInterrupted) if a signal has arrived; while
// held, a signal waits before it cleans up and exits.
std::unique_lock<std::mutex> critical_section();

}  // namespace eplb::core::interrupt
