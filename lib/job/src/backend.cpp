#include "eplb/job/backend.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/transport/mpi_transport.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::job {

Backend parse_backend(const std::string& text) {
  if (text == "auto") return Backend::kAuto;
  if (text == "mpi") return Backend::kMpi;
  if (text == "nccl") return Backend::kNccl;
  throw core::Error(core::ErrorKind::kUsage,
                    "unknown backend '" + text + "' (expected auto, mpi or nccl)");
}

namespace {

// Collective: which GPU every process would take (transport::gpu_for); rank 0 prints one
// line per rank when any process has a GPU. True on every rank when every process has a
// GPU and no two processes of one host would share a physical GPU (NCCL refuses that);
// otherwise rank 0 sets `why`.
bool gpus_usable(const runtime::MpiSession& session, std::string& why) {
  const transport::GpuChoice gpu = transport::probe_gpu(session.node_rank());
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string line =
      fmt::format("{} {} {} {} {} {}", session.rank(), session.host(), gpu.device, gpu.num_visible,
                  gpu.pci_bus_id.empty() ? "-" : gpu.pci_bus_id, visible ? visible : "(unset)");
  // rank 0 gets them all
  const auto lines = runtime::gather_lines(session.group(), {line}, "gathering each rank's GPU");
  bool ok = true;
  if (session.rank() == 0) {
    std::map<std::pair<std::string, std::string>, int> owner;  // (host, bus id) -> rank
    std::string summary;
    bool any_gpu = false;
    for (const auto& l : lines) {
      std::istringstream in(l);
      int rank = 0, device = -1, num_visible = 0;
      std::string host, bus, env;
      in >> rank >> host >> device >> num_visible >> bus >> env;
      if (device < 0) {
        if (ok) why = fmt::format("rank {} on {} sees no usable GPU", rank, host);
        ok = false;
        continue;
      }
      any_gpu = true;
      summary +=
          fmt::format("\n  rank {} on {}: GPU {} of {} visible (PCI {}, CUDA_VISIBLE_DEVICES={})",
                      rank, host, device, num_visible, bus, env);
      auto [it, fresh] = owner.try_emplace({host, bus}, rank);
      if (!fresh && bus != "-" && ok) {
        why = fmt::format(
            "ranks {} and {} on {} would share GPU {} (give each process its own GPU, e.g. "
            "slurm's --gpus-per-task=1, or one process per visible GPU)",
            it->second, rank, host, bus);
        ok = false;
      }
    }
    if (any_gpu) core::log::info("GPU of each rank:{}", summary);
  }
  return runtime::all_true(session.group(), ok, "agreeing on the GPUs");  // only rank 0 can say no
}

}  // namespace

const char* to_string(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kMpi:
      return "mpi";
    case Backend::kNccl:
      return "nccl";
  }
  return "?";
}

bool backend_needs_gpu_probe(const BackendQuery& query) {
  if (query.requested == Backend::kMpi) return false;
  if (query.requested == Backend::kNccl) return true;
  return !(query.workload == Workload::kDiskToDisk && query.num_nodes <= 1);
}

BackendChoice choose_backend(const BackendQuery& query) {
  const std::string gpus = fmt::format("{} processes, one GPU each", query.num_processes);
  switch (query.requested) {
    case Backend::kMpi:
      return {Backend::kMpi, "requested with --backend mpi"};
    case Backend::kNccl:
      EPLB_ASSERT(query.gpus_usable);
      return {Backend::kNccl, "requested with --backend nccl; " + gpus};
    case Backend::kAuto:
      break;
  }
  if (query.workload == Workload::kDiskToDisk && query.num_nodes <= 1) {
    // Measured on 2 H200s, 4.76 GB: MPI 1.06x the storage roofline, NCCL 1.25x.
    return {Backend::kMpi,
            fmt::format("auto: {} on one node; disk to disk the host path is faster than "
                        "NCCL's host<->device copies (docs/PERFORMANCE.md)",
                        query.num_processes == 1
                            ? std::string("the only process")
                            : fmt::format("all {} processes", query.num_processes))};
  }
  if (query.gpus_usable) {
    return {Backend::kNccl, fmt::format("auto: {} on {} nodes", gpus, query.num_nodes)};
  }
  return {Backend::kMpi, "auto: no usable GPU: " + query.why_no_gpus};
}

ChosenTransport make_transport(const runtime::MpiSession& session, Backend backend,
                               Workload workload, const transport::TransportOptions& options) {
  BackendQuery query{backend,        workload,
                     session.size(), session.num_nodes(),
                     false,          "NCCL is not built in, or some process sees no CUDA device"};
  if (backend_needs_gpu_probe(query)) {
    query.gpus_usable = runtime::all_true(session.group(), transport::nccl_available(1),
                                          "choosing the backend (GPUs everywhere?)") &&
                        gpus_usable(session, query.why_no_gpus);
  }
  if (backend == Backend::kNccl && !query.gpus_usable) {
    // Every rank knows it (the checks above are collective); rank 0 says it once.
    if (session.rank() != 0) throw core::Error::reported_elsewhere(core::ErrorKind::kUsage);
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("--backend nccl needs one GPU per process: {}; use --backend mpi",
                                  query.why_no_gpus));
  }
  ChosenTransport chosen{nullptr, choose_backend(query)};
  // NOTE: every rank chooses the same backend: its inputs are agreed (all_true) or global
  // (only rank 0 knows why_no_gpus, and only rank 0 prints).
  core::log::info("backend: {} ({})", to_string(chosen.choice.backend), chosen.choice.reason);
  chosen.transport =
      chosen.choice.backend == Backend::kNccl
          ? transport::make_nccl_transport(session.comm(), session.node_rank(), options)
          : transport::make_mpi_transport(session.comm(), options);
  return chosen;
}

}  // namespace eplb::job
