#include "eplb/engine/backend.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/transport/mpi_transport.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::engine {

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

std::unique_ptr<transport::Transport> make_transport(const runtime::MpiSession& session,
                                                     Backend backend,
                                                     const transport::TransportOptions& options) {
  bool gpu_everywhere = false;
  std::string why = "NCCL is not built in, or some process sees no CUDA device";
  if (backend != Backend::kMpi) {
    gpu_everywhere = runtime::all_true(session.group(), transport::nccl_available(1),
                                       "choosing the backend (GPUs everywhere?)") &&
                     gpus_usable(session, why);
  }
  if (backend == Backend::kNccl && !gpu_everywhere) {
    // Every rank knows it (the checks above are collective); rank 0 says it once.
    if (session.rank() != 0) throw core::Error::reported_elsewhere(core::ErrorKind::kUsage);
    throw core::Error(
        core::ErrorKind::kUsage,
        fmt::format("--backend nccl needs one GPU per process: {}; use --backend mpi", why));
  }
  if (gpu_everywhere) {
    core::log::info("backend: nccl ({} processes, one GPU each)", session.size());
    return transport::make_nccl_transport(session.comm(), session.node_rank(), options);
  }
  core::log::info("backend: mpi ({} processes{})", session.size(),
                  backend == Backend::kAuto ? ", no usable GPU: " + why : std::string());
  return transport::make_mpi_transport(session.comm(), options);
}

}  // namespace eplb::engine
