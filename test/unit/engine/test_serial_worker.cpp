// detail::SerialWorker and detail::LayerJob: jobs run in order on one thread, and a job's
// results are the poster's once it has waited.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "serial_worker.hpp"

namespace {

using eplb::engine::detail::LayerJob;
using eplb::engine::detail::SerialWorker;

}  // namespace

TEST_CASE("a serial worker runs its jobs in order, one at a time") {
  SerialWorker worker;
  std::vector<int> order;  // written by the worker only, read after wait()
  std::atomic<int> running{0};
  bool overlapped = false;
  uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    last = worker.post([&, i] {
      if (running.fetch_add(1) != 0) overlapped = true;
      if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      order.push_back(i);
      running.fetch_sub(1);
    });
  }
  worker.wait(last);
  CHECK(worker.done(last));
  CHECK_FALSE(overlapped);
  REQUIRE(order.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(order[static_cast<size_t>(i)] == i);
}

TEST_CASE("a job's escaped exception comes back from wait()") {
  SerialWorker worker;
  const uint64_t bad = worker.post([] { throw std::runtime_error("disk on fire"); });
  const uint64_t after = worker.post([] {});
  CHECK_THROWS_WITH(worker.wait(bad), "disk on fire");
  CHECK_THROWS_WITH(worker.wait(after), "disk on fire");  // the first error sticks
}

TEST_CASE("a layer job reports its layer, problems, bytes and time to the poster") {
  SerialWorker worker;
  LayerJob job;
  std::atomic<bool> release{false};
  job.post(worker, 7, [&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    job.bytes += 4096;
    job.problems.add("layer 7: something to report");
  });
  CHECK(job.layer == 7);
  CHECK_FALSE(job.done(worker));  // held until released
  release = true;
  job.wait(worker, 7);
  CHECK(job.ticket == 0);
  CHECK(job.bytes == 4096);
  CHECK(job.seconds >= 0.02);
  REQUIRE(job.problems.size() == 1);

  // Posting again starts from a clean report.
  job.post(worker, 8, [] {});
  job.wait(worker, 8);
  CHECK(job.layer == 8);
  CHECK(job.bytes == 0);
  CHECK(job.problems.empty());
  CHECK(job.seconds < 1.0);
}
