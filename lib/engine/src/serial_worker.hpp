// Internal to lib/engine: one thread that runs posted jobs one after the other, in order
// (the pipeline's reader and writer). Local; the poster is one thread.
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

}  // namespace eplb::engine::detail
