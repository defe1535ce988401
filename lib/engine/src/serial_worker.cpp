#include "serial_worker.hpp"

#include <utility>

#include "eplb/core/clock.hpp"
#include "eplb/core/error.hpp"

namespace eplb::engine::detail {

SerialWorker::SerialWorker() : thread_([this] { loop(); }) {}

SerialWorker::~SerialWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  work_.notify_all();
  thread_.join();
}

uint64_t SerialWorker::post(std::function<void()> job) {
  uint64_t ticket = 0;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(job));
    ticket = ++posted_;
  }
  work_.notify_one();
  return ticket;
}

void SerialWorker::wait(uint64_t ticket) {
  std::unique_lock lock(mutex_);
  EPLB_ASSERT(ticket <= posted_);
  done_.wait(lock, [&] { return finished_ >= ticket; });
  if (error_) std::rethrow_exception(error_);
}

bool SerialWorker::done(uint64_t ticket) const {
  std::lock_guard lock(mutex_);
  return finished_ >= ticket;
}

void SerialWorker::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error && !error_) error_ = error;
    ++finished_;
    done_.notify_all();
  }
}

void LayerJob::post(SerialWorker& worker, int32_t layer_idx, std::function<void()> work) {
  EPLB_ASSERT(ticket == 0);
  layer = layer_idx;
  problems = core::ProblemList(core::ErrorKind::kIo);
  bytes = 0;
  seconds = 0;
  ticket = worker.post([this, work = std::move(work)] {
    const auto start = core::Clock::now();
    work();
    seconds = core::seconds_since(start);
  });
}

void LayerJob::wait(SerialWorker& worker, int32_t layer_idx) {
  EPLB_ASSERT(layer == layer_idx && ticket != 0);
  worker.wait(ticket);
  ticket = 0;
}

}  // namespace eplb::engine::detail
