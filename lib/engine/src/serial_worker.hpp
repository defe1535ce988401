// Internal to lib/engine: one thread that runs posted jobs one after the other, in order
// (the pipelines' readers and writers), and LayerJob, one such job's results. Local; the
// poster is one thread.
//
// RAII: the destructor drops the jobs not started, waits for the running one and joins,
// so no job outlives what it uses as long as the worker is destroyed first (declare it
// after what its jobs touch). Jobs report their problems through state they own (captured
// core::Error); an exception that escapes a job anyway is rethrown by wait().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "eplb/core/error.hpp"

namespace eplb::engine::detail {

class SerialWorker {
 public:
  SerialWorker();
  ~SerialWorker();
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;

  // Queues a job; returns its ticket (1, 2, ...: jobs run in ticket order).
  uint64_t post(std::function<void()> job);
  // Blocks until the job with this ticket (and every earlier one) has run; what it wrote
  // is then visible to the caller. Rethrows the first exception a job let escape.
  void wait(uint64_t ticket);
  // Whether the job with this ticket has run (never blocks on a job).
  bool done(uint64_t ticket) const;

 private:
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable work_;  // a job was queued, or stopping
  std::condition_variable done_;  // a job finished
  std::deque<std::function<void()>> queue_;
  uint64_t posted_ = 0;
  uint64_t finished_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once the rest is ready
};

// A job of one layer on a SerialWorker, and what it reports back: its problems, the bytes
// it moved and its own time. The job owns them from post() until the poster's wait()
// returns; the poster reads them then.
struct LayerJob {
  int32_t layer = -1;
  uint64_t ticket = 0;  // 0: none in flight
  core::ProblemList problems{core::ErrorKind::kIo};
  long long bytes = 0;
  double seconds = 0;

  // Queues `work` on `worker` for layer `layer_idx` (none may be in flight), timed.
  void post(SerialWorker& worker, int32_t layer_idx, std::function<void()> work);
  // Blocks until layer `layer_idx`'s job, which must be in flight, has run.
  void wait(SerialWorker& worker, int32_t layer_idx);
  // Whether the job in flight has run (never blocks on it).
  bool done(const SerialWorker& worker) const { return worker.done(ticket); }
};

}  // namespace eplb::engine::detail
