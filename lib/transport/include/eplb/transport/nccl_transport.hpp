// The NCCL backend's public face, without nccl.h, cuda_runtime.h or mpi.h: every build has
// these (a build without NCCL says so when asked for a transport). Made from an NCCL unique
// id or from the caller's communicator, it needs no MPI at all (the in-server library);
// made from an MPI communicator (mpi_transport.hpp), it bootstraps and agrees over MPI.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "eplb/transport/transport.hpp"

namespace eplb::transport {

// True when this build has the NCCL backend and this node has a CUDA device for each of
// the `processes_on_node` processes sharing it (NCCL refuses two ranks on one GPU). Local.
bool nccl_available(int processes_on_node = 1);
// True when this build has the NCCL backend. Local.
bool nccl_built();

// The GPU a process uses follows its launcher: with one visible device (slurm's
// --gpus-per-task=1, or CUDA_VISIBLE_DEVICES set per rank), that device; otherwise the
// node-local rank modulo the visible devices.
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

// NCCL's unique id, as bytes (ncclUniqueId is 128 bytes).
inline constexpr size_t kNcclIdBytes = 128;
using NcclId = std::array<std::byte, kNcclIdBytes>;

// Local: a new unique id (ncclGetUniqueId), for one process to distribute to the others.
// Throws core::Error(kComm) on failure or in a build without NCCL.
NcclId new_nccl_id();

// Collective over the `size` processes that pass the same `id`, each with its `rank`:
// creates an NCCL communicator of the transport's own on CUDA device `device` (-1: the
// calling thread's current device). Segments may be pinned host memory (allocate_host) or
// device memory of that device. The CUDA context, device staging and communicator are set
// up in the background; the first exchange() (or close()) waits for them within
// options.timeout. Agreements go over `control` when given, else over NCCL itself.
// Throws core::Error(kComm) in a build without NCCL.
std::unique_ptr<Transport> make_nccl_transport(const NcclId& id, int rank, int size, int device,
                                               const TransportOptions& options,
                                               std::unique_ptr<Control> control = nullptr);

// Collective over the caller's communicator `nccl_comm` (an ncclComm_t): creates no second
// one. The transport's device is the communicator's. Every exchange first waits for the
// work already enqueued on `cuda_stream` (a cudaStream_t; nullptr: none). The caller
// keeps ownership: close() leaves the communicator open; after a failure or timeout the
// transport has aborted it (ncclCommAbort), the only way to free a stream waiting for a
// dead peer, and the caller's handle is invalid. Throws core::Error(kComm) in a build
// without NCCL.
std::unique_ptr<Transport> make_nccl_transport_from_comm(void* nccl_comm, void* cuda_stream,
                                                         const TransportOptions& options);

}  // namespace eplb::transport
