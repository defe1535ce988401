// A crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL) inside a named step, such as HDF5 parsing an
// input shard (which a damaged file can crash), is said in one line before any other
// report: "eplb-rebalance: error: [rank 0/2 host] crashed (SIGSEGV) while opening '...'".
// The handler that was installed before (MPI's backtrace, or the default) then runs as
// it would have, and the process still dies by the signal (exit 128 + N under a shell).
//
// Local: acts on the calling process only.
#pragma once

#include <string_view>

namespace eplb::core::crash {

// Installs the handlers; call after MPI_Init (which installs MPI's own), so that both
// run, ours first. Idempotent.
void install();

// While alive, a crash on any thread is reported as happening in `what` (the innermost
// live Step is named; steps run on the main thread). Must not be copied.
class Step {
 public:
  explicit Step(std::string_view what);
  ~Step();
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;

 private:
  int depth_;
};

}  // namespace eplb::core::crash
