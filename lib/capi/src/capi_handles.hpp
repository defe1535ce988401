// What the C ABI's opaque handles are, and the one wrapper every entry point runs in.
// Internal to libeplb (and libeplb_mpi, which is the same library plus MPI).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "eplb/eplb.h"
#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"
#include "rearranger.hpp"

struct eplb_comm_s {
  std::unique_ptr<eplb::transport::Transport> transport;
  std::chrono::milliseconds timeout{600000};
  size_t transport_staging = 0;
  void* caller_stream = nullptr;  // eplb_comm_from_nccl's: blocking calls wait for it
  bool failed = false;            // a comm failure or timeout aborted it: refuse at once
};

struct eplb_plan_s {
  eplb::plan::Plan plan;
  eplb::plan::PlanStats stats;
};

struct eplb_rebalancer_s {
  eplb_comm_s* comm = nullptr;
  eplb::plan::Plan plan;
  std::optional<eplb::capi::Rearranger> rearranger;
};

namespace eplb::capi {

// Runs `body`; returns EPLB_OK, or the status of what it threw with the thread's last error
// set (each problem on its own line, "[rank R/N] " first when `comm` is known). A
// communication failure or timeout marks `comm` failed: later calls on it fail at once.
eplb_status guarded(eplb_comm_s* comm, const std::function<void()>& body) noexcept;

// The transport options of `options` (NULL: the defaults); throws core::Error(kUsage).
transport::TransportOptions transport_options(const eplb_comm_options* options);

// Throws core::Error(kUsage, what) unless `ok`.
void require(bool ok, const char* what);

// Sets the thread's last error (for statuses returned without guarded()).
void set_last_error(std::string text);

}  // namespace eplb::capi
