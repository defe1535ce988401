#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// True when this build has the NCCL backend and this node has a CUDA device for each of
// the `processes_on_node` processes sharing it (NCCL refuses two ranks on one GPU). Local.
bool nccl_available(int processes_on_node = 1);

// The GPU a process uses follows its launcher: with one visible device (slurm's
// --gpus-per-task=1, or CUDA_VISIBLE_DEVICES set per rank), that device; otherwise the
// node-local rank (learned from MPI, MPI_COMM_TYPE_SHARED) modulo the visible devices.
// Local and pure: the CUDA ordinal for `node_rank` among `num_visible` (> 0) devices.
int gpu_for(int node_rank, int num_visible);

struct GpuChoice {
  int device = -1;         // CUDA ordinal among the visible devices; -1: none usable
  int num_visible = 0;     // devices this process sees
  std::string pci_bus_id;  // the physical GPU, comparable across processes of a host
};

// Local: the GPU this process would take (gpu_for), without making it current. device is
// -1 in a build without NCCL or where no CUDA device is visible.
GpuChoice probe_gpu(int node_rank);

// Collective over `comm`: selects the GPU from the node-local rank, creates the NCCL
// communicator (unique id broadcast over MPI). Segments may be pinned host memory
// (allocate_host) or device memory. Throws core::Error(kComm) if NCCL is unavailable.
// The CUDA context, device staging and communicator are set up in the background: the
// first exchange() waits for them (and reports what failed there), so that work the
// caller does meanwhile (reading the first layers) hides them; setup_times() says how much.
// The concrete type (communicator, stream, device buffers) is in nccl_detail.hpp.
std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int node_rank,
                                               const TransportOptions& options);

}  // namespace eplb::transport
