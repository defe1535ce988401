// The C ABI of include/eplb/eplb.h over the exchange engine: handles, status codes and the
// thread's last error. Nothing throws across it: every function runs its body in guarded(),
// which turns the typed errors of lib/ into a status and a message naming the rank.
#include "eplb/eplb.h"

#include <fmt/format.h>

#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "capi_handles.hpp"
#include "eplb/placement/elastic.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::capi {
namespace {

thread_local std::string t_last_error;

constexpr int64_t kDefaultTimeoutMs = 600000;
constexpr size_t kDefaultTransportStaging = size_t{256} << 20;

eplb_status status_of(const core::Error& e) {
  switch (e.kind()) {
    case core::ErrorKind::kUsage:
      return EPLB_ERR_USAGE;
    case core::ErrorKind::kInput:
    case core::ErrorKind::kIo:
      return EPLB_ERR_INPUT;
    case core::ErrorKind::kVerify:
      return EPLB_ERR_CORRUPT;
    case core::ErrorKind::kComm:
    case core::ErrorKind::kInterrupted:
      // NOTE: every deadline of lib/ says "timed out" in its message.
      return std::string_view(e.what()).find("timed out") != std::string_view::npos
                 ? EPLB_ERR_TIMEOUT
                 : EPLB_ERR_COMM;
    case core::ErrorKind::kInternal:
      break;
  }
  return EPLB_ERR_INTERNAL;
}

std::string rank_tag(const eplb_comm_s* comm) {
  if (comm == nullptr || !comm->transport) return "";
  return fmt::format("[rank {}/{}] ", comm->transport->rank(), comm->transport->size());
}

}  // namespace

void set_last_error(std::string text) { t_last_error = std::move(text); }

eplb_status guarded(eplb_comm_s* comm, const std::function<void()>& body) noexcept {
  try {
    if (comm != nullptr && comm->failed) {
      throw core::Error(core::ErrorKind::kComm,
                        "the communicator is unusable after an earlier failure (it was aborted)");
    }
    body();
    return EPLB_OK;
  } catch (const core::Error& e) {
    const eplb_status status = status_of(e);
    if (comm != nullptr && (status == EPLB_ERR_COMM || status == EPLB_ERR_TIMEOUT)) {
      comm->failed = true;
    }
    std::string text;
    for (const auto& problem : e.problems()) {
      text += (text.empty() ? "" : "\n") + rank_tag(comm) + problem;
    }
    if (text.empty()) text = rank_tag(comm) + "failed on another rank (its message says why)";
    t_last_error = text;
    return status;
  } catch (const std::bad_alloc&) {
    t_last_error = rank_tag(comm) + "out of memory";
    return EPLB_ERR_INTERNAL;
  } catch (const std::exception& e) {
    t_last_error = rank_tag(comm) + "internal error: " + e.what();
    return EPLB_ERR_INTERNAL;
  } catch (...) {
    t_last_error = rank_tag(comm) + "internal error: an unknown exception";
    return EPLB_ERR_INTERNAL;
  }
}

transport::TransportOptions transport_options(const eplb_comm_options* options) {
  eplb_comm_options o;
  eplb_comm_options_init(&o);
  if (options != nullptr) o = *options;
  if (o.timeout_ms < 0) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("timeout_ms is {}: give 0 (the default) or more", o.timeout_ms));
  }
  transport::TransportOptions t;
  t.timeout = std::chrono::milliseconds(o.timeout_ms == 0 ? kDefaultTimeoutMs : o.timeout_ms);
  t.device_staging_bytes =
      o.transport_staging_bytes == 0 ? kDefaultTransportStaging : o.transport_staging_bytes;
  return t;
}

void require(bool ok, const char* what) {
  if (!ok) throw core::Error(core::ErrorKind::kUsage, what);
}

namespace {

// A map of the C ABI as a placement: ids checked, the expert count from the largest id.
placement::Placement to_placement(const int64_t* map, int32_t ep_size, int32_t slots,
                                  int32_t num_layers, const char* name,
                                  core::ProblemList& problems) {
  placement::Placement p;
  p.ep_size = ep_size;
  p.num_slots_per_rank = slots;
  const size_t per_layer = static_cast<size_t>(ep_size) * static_cast<size_t>(slots);
  for (int32_t l = 0; l < num_layers; ++l) {
    std::vector<int32_t> row(per_layer);
    for (size_t p_idx = 0; p_idx < per_layer; ++p_idx) {
      const int64_t id = map[static_cast<size_t>(l) * per_layer + p_idx];
      if (id < -1 || id >= (int64_t{1} << 30)) {
        if (problems.size() < 16) {
          problems.add(
              fmt::format("{} map, layer {}, physical slot {}: logical expert id {} is "
                          "not -1 or in [0, 2^30)",
                          name, l, p_idx, id));
        }
        row[p_idx] = -1;
        continue;
      }
      row[p_idx] = static_cast<int32_t>(id);
      p.num_logical_experts = std::max(p.num_logical_experts, static_cast<int32_t>(id) + 1);
    }
    p.physical_to_logical_map.push_back(std::move(row));
  }
  return p;
}

}  // namespace

plan::Plan make_plan_from_maps(const int64_t* old_map, int32_t old_ep_size, int32_t old_slots,
                               const int64_t* new_map, int32_t new_ep_size, int32_t new_slots,
                               int32_t num_layers, const int32_t* rank_mapping, uint32_t flags) {
  require(old_map != nullptr && new_map != nullptr, "old_map and new_map must not be NULL");
  require(num_layers >= 1, "num_layers must be at least 1");
  require(old_ep_size >= 1 && new_ep_size >= 1, "EP sizes must be at least 1");
  require(old_slots >= 1 && new_slots >= 1, "slots per rank must be at least 1");
  core::ProblemList problems(core::ErrorKind::kInput);
  placement::Placement old_p =
      to_placement(old_map, old_ep_size, old_slots, num_layers, "the old", problems);
  placement::Placement new_p =
      to_placement(new_map, new_ep_size, new_slots, num_layers, "the new", problems);
  problems.throw_if_any();
  const int32_t experts = std::max(old_p.num_logical_experts, new_p.num_logical_experts);
  old_p.num_logical_experts = new_p.num_logical_experts = std::max(experts, 1);
  if (rank_mapping != nullptr) {
    placement::RankMapping mapping;
    mapping.new_rank_of.assign(rank_mapping, rank_mapping + old_ep_size);
    new_p = placement::apply_rank_mapping(old_p, new_p, mapping, "the new map");
  }
  placement::CompatibleOptions compatible;
  compatible.allow_dropping_experts = (flags & EPLB_ALLOW_DROPPING_EXPERTS) != 0;
  const auto incompatible =
      placement::check_compatible(old_p, new_p, "the old map", "the new map", compatible);
  if (!incompatible.empty()) throw core::Error(core::ErrorKind::kInput, incompatible);
  return plan::make_plan(old_p, new_p);
}

}  // namespace eplb::capi

using eplb::capi::guarded;
using eplb::capi::require;

extern "C" {

int eplb_version(void) { return EPLB_VERSION; }

const char* eplb_build_info(void) {
  static const std::string info =
      fmt::format("eplb {}.{}.{} (backends: host memory over MPI through libeplb_mpi; NCCL {})",
                  EPLB_VERSION_MAJOR, EPLB_VERSION_MINOR, EPLB_VERSION_PATCH,
                  eplb::transport::nccl_built() ? "built" : "not built");
  return info.c_str();
}

const char* eplb_last_error(void) { return eplb::capi::t_last_error.c_str(); }

const char* eplb_status_name(eplb_status status) {
  switch (status) {
    case EPLB_OK:
      return "EPLB_OK";
    case EPLB_NOT_READY:
      return "EPLB_NOT_READY";
    case EPLB_ERR_INPUT:
      return "EPLB_ERR_INPUT";
    case EPLB_ERR_CORRUPT:
      return "EPLB_ERR_CORRUPT";
    case EPLB_ERR_COMM:
      return "EPLB_ERR_COMM";
    case EPLB_ERR_TIMEOUT:
      return "EPLB_ERR_TIMEOUT";
    case EPLB_ERR_UNAVAILABLE:
      return "EPLB_ERR_UNAVAILABLE";
    case EPLB_ERR_USAGE:
      return "EPLB_ERR_USAGE";
    case EPLB_ERR_INTERNAL:
      return "EPLB_ERR_INTERNAL";
  }
  return "EPLB_ERR_UNKNOWN";
}

void eplb_comm_options_init(eplb_comm_options* options) {
  if (options == nullptr) return;
  options->timeout_ms = eplb::capi::kDefaultTimeoutMs;
  options->transport_staging_bytes = eplb::capi::kDefaultTransportStaging;
}

eplb_status eplb_comm_from_nccl(void* nccl_comm, void* cuda_stream,
                                const eplb_comm_options* options, eplb_comm_t* out) {
  if (!eplb::transport::nccl_built()) {
    eplb::capi::t_last_error = "NCCL backend not available in this build";
    return EPLB_ERR_UNAVAILABLE;
  }
  return guarded(nullptr, [&] {
    require(out != nullptr && nccl_comm != nullptr, "nccl_comm and out must not be NULL");
    *out = nullptr;
    const auto t = eplb::capi::transport_options(options);
    auto comm = std::make_unique<eplb_comm_s>();
    comm->timeout = t.timeout;
    comm->transport_staging = t.device_staging_bytes;
    comm->caller_stream = cuda_stream;
    comm->transport = eplb::transport::make_nccl_transport_from_comm(nccl_comm, cuda_stream, t);
    *out = comm.release();
  });
}

eplb_status eplb_nccl_unique_id(void* unique_id, size_t bytes) {
  if (!eplb::transport::nccl_built()) {
    eplb::capi::t_last_error = "NCCL backend not available in this build";
    return EPLB_ERR_UNAVAILABLE;
  }
  return guarded(nullptr, [&] {
    require(unique_id != nullptr && bytes == eplb::transport::kNcclIdBytes,
            "unique_id must point to 128 bytes");
    const auto id = eplb::transport::new_nccl_id();
    std::memcpy(unique_id, id.data(), id.size());
  });
}

eplb_status eplb_comm_from_unique_id(const void* unique_id, size_t bytes, int rank, int size,
                                     int device, const eplb_comm_options* options,
                                     eplb_comm_t* out) {
  if (!eplb::transport::nccl_built()) {
    eplb::capi::t_last_error = "NCCL backend not available in this build";
    return EPLB_ERR_UNAVAILABLE;
  }
  return guarded(nullptr, [&] {
    require(out != nullptr && unique_id != nullptr && bytes == eplb::transport::kNcclIdBytes,
            "unique_id must point to 128 bytes and out must not be NULL");
    *out = nullptr;
    const auto t = eplb::capi::transport_options(options);
    eplb::transport::NcclId id;
    std::memcpy(id.data(), unique_id, id.size());
    auto comm = std::make_unique<eplb_comm_s>();
    comm->timeout = t.timeout;
    comm->transport_staging = t.device_staging_bytes;
    comm->transport = eplb::transport::make_nccl_transport(id, rank, size, device, t);
    // The set-up runs in the background: finished (and agreed on) here, within the timeout.
    comm->transport->all_max({0}, "the NCCL communicator's set-up");
    *out = comm.release();
  });
}

eplb_status eplb_comm_rank(eplb_comm_t comm, int* rank, int* size) {
  return guarded(nullptr, [&] {
    require(comm != nullptr && comm->transport, "comm must not be NULL");
    if (rank != nullptr) *rank = comm->transport->rank();
    if (size != nullptr) *size = comm->transport->size();
  });
}

const char* eplb_comm_backend(eplb_comm_t comm) {
  if (comm == nullptr || !comm->transport) return "";
  return comm->transport->name() == "nccl" ? "nccl" : "mpi";
}

eplb_status eplb_comm_agree(eplb_comm_t comm, int local_ok, int* all_ok, int32_t* bad_ranks,
                            int32_t max_bad, int32_t* num_bad) {
  return guarded(comm, [&] {
    require(comm != nullptr && all_ok != nullptr, "comm and all_ok must not be NULL");
    const int size = comm->transport->size();
    std::vector<long long> flags(static_cast<size_t>(size), 0);
    flags[static_cast<size_t>(comm->transport->rank())] = local_ok ? 0 : 1;
    flags = comm->transport->all_max(flags, "the caller's agreement");
    int32_t count = 0;
    for (int r = 0; r < size; ++r) {
      if (flags[static_cast<size_t>(r)] == 0) continue;
      if (bad_ranks != nullptr && count < max_bad) bad_ranks[count] = r;
      ++count;
    }
    *all_ok = count == 0 ? 1 : 0;
    if (num_bad != nullptr) *num_bad = count;
  });
}

eplb_status eplb_comm_destroy(eplb_comm_t comm) {
  if (comm == nullptr) return EPLB_OK;
  std::unique_ptr<eplb_comm_s> owned(comm);
  if (owned->failed || !owned->transport) return EPLB_OK;
  return guarded(owned.get(), [&] { owned->transport->close(); });
}

eplb_status eplb_plan_create(const int64_t* old_map, int32_t old_ep_size,
                             int32_t old_slots_per_rank, const int64_t* new_map,
                             int32_t new_ep_size, int32_t new_slots_per_rank, int32_t num_layers,
                             const int32_t* rank_mapping, uint32_t flags, eplb_plan_t* out) {
  return guarded(nullptr, [&] {
    require(out != nullptr, "out must not be NULL");
    *out = nullptr;
    auto p = std::make_unique<eplb_plan_s>();
    p->plan = eplb::capi::make_plan_from_maps(old_map, old_ep_size, old_slots_per_rank, new_map,
                                              new_ep_size, new_slots_per_rank, num_layers,
                                              rank_mapping, flags);
    p->stats = eplb::plan::summarize(p->plan);
    *out = p.release();
  });
}

eplb_status eplb_plan_stats_get(eplb_plan_t plan, eplb_plan_stats* stats) {
  return guarded(nullptr, [&] {
    require(plan != nullptr && stats != nullptr, "plan and stats must not be NULL");
    const auto& s = plan->stats;
    *stats = eplb_plan_stats{};
    stats->num_layers = static_cast<int64_t>(plan->plan.layers.size());
    stats->experts_moved = s.experts_moved;
    stats->min_experts_required = s.min_experts_required;
    stats->busiest_sender_experts = s.busiest_sender_experts;
    for (const auto& r : s.ranks) {
      stats->messages += r.messages_sent;
      stats->rows_unchanged += r.rows_unchanged;
      stats->rows_local += r.rows_local;
      stats->rows_empty += r.rows_empty;
    }
  });
}

eplb_status eplb_plan_destroy(eplb_plan_t plan) {
  delete plan;
  return EPLB_OK;
}

void eplb_rearrange_options_init(eplb_rearrange_options* options) {
  if (options == nullptr) return;
  *options = eplb_rearrange_options{};
  options->verify = 1;
}

eplb_status eplb_rebalancer_create(eplb_comm_t comm, eplb_plan_t plan, const eplb_tensor* tensors,
                                   int32_t num_tensors, const eplb_rearrange_options* options,
                                   eplb_rebalancer_t* out) {
  return guarded(comm, [&] {
    require(comm != nullptr && plan != nullptr && out != nullptr,
            "comm, plan and out must not be NULL");
    require(tensors != nullptr && num_tensors >= 1,
            "tensors must not be NULL and num_tensors must be at least 1");
    *out = nullptr;
    auto rb = std::make_unique<eplb_rebalancer_s>();
    rb->comm = comm;
    rb->plan = plan->plan;  // a copy: the rebalancer outlives no handle but its comm
    std::vector<std::vector<eplb::capi::TensorRows>> layers(rb->plan.layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      for (int32_t k = 0; k < num_tensors; ++k) {
        const eplb_tensor& t =
            tensors[l * static_cast<size_t>(num_tensors) + static_cast<size_t>(k)];
        layers[l].push_back({static_cast<std::byte*>(t.data), t.num_rows, t.row_bytes, t.tag});
      }
    }
    eplb::capi::RearrangeOptions o;
    if (options != nullptr) {
      o.staging_bytes = options->staging_bytes;
      o.profile = options->profile != 0;
      o.verify = options->verify != 0;
    }
    o.timeout = comm->timeout;
    rb->rearranger.emplace(*comm->transport, rb->plan, std::move(layers), o);
    *out = rb.release();
  });
}

namespace {

void fill(eplb_report* report, const eplb::capi::RearrangeReport& r, const eplb_comm_s& comm) {
  if (report == nullptr) return;
  *report = eplb_report{};
  report->bytes_sent = r.bytes_sent;
  report->bytes_received = r.bytes_received;
  report->rows_rewritten = r.rows_rewritten;
  report->staging_bytes = r.staging_bytes;
  report->transport_staging_bytes =
      comm.transport->name() == "nccl" ? static_cast<int64_t>(comm.transport_staging) : 0;
  report->layers_per_exchange = r.layers_per_exchange;
  report->seconds = r.seconds;
}

}  // namespace

eplb_status eplb_rearrange(eplb_rebalancer_t rb, eplb_report* report) {
  return guarded(rb != nullptr ? rb->comm : nullptr, [&] {
    require(rb != nullptr, "rebalancer must not be NULL");
    fill(report, rb->rearranger->rearrange(rb->comm->caller_stream), *rb->comm);
  });
}

eplb_status eplb_layer_start(eplb_rebalancer_t rb, int32_t layer, void* cuda_stream) {
  return guarded(rb != nullptr ? rb->comm : nullptr, [&] {
    require(rb != nullptr, "rebalancer must not be NULL");
    rb->rearranger->start(layer, cuda_stream);
  });
}

eplb_status eplb_layer_test(eplb_rebalancer_t rb, int32_t layer) {
  bool landed = false;
  const eplb_status status = guarded(rb != nullptr ? rb->comm : nullptr, [&] {
    require(rb != nullptr, "rebalancer must not be NULL");
    landed = rb->rearranger->test(layer);
  });
  return status == EPLB_OK && !landed ? EPLB_NOT_READY : status;
}

eplb_status eplb_layer_finish(eplb_rebalancer_t rb, int32_t layer, void* cuda_stream,
                              eplb_report* report) {
  return guarded(rb != nullptr ? rb->comm : nullptr, [&] {
    require(rb != nullptr, "rebalancer must not be NULL");
    fill(report, rb->rearranger->finish(layer, cuda_stream), *rb->comm);
  });
}

eplb_status eplb_rebalancer_destroy(eplb_rebalancer_t rb) {
  if (rb == nullptr) return EPLB_OK;
  std::unique_ptr<eplb_rebalancer_s> owned(rb);
  return guarded(nullptr, [&] { owned->rearranger.reset(); });
}

}  // extern "C"
