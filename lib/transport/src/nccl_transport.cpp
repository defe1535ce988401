// NCCL backend: the pipeline. NCCL builds only (nccl_stub.cpp stands in otherwise); memory
// classification is in nccl_memory.cpp, the round trace in nccl_trace.cpp.
//
// With NCCL, exchange() moves the byte streams in rounds. In round k every peer's stream
// contributes its k-th piece (detail::piece_sizes: at most `piece_cap` bytes, ramped up at the
// start and down at the end, the same on both sides of a pair);
// a round is one NCCL group with one send and one receive per peer. Staging is double
// buffered and three streams overlap the phases of consecutive rounds:
//
//   gather stream:  G0 G1    G2    G3 ...   (segments -> send staging half k%2)
//   comm stream:       N0 N1    N2    ...   (NCCL group of round k)
//   scatter stream:       S0    S1    ...   (recv staging half k%2 -> segments)
//
// N(k) waits for G(k) and for S(k-2) (same receive half); G(k) waits for N(k-2) (same send
// half); S(k) waits for N(k). Every send and receive uses the staging buffer, which is
// registered with NCCL where every rank could allocate it with ncclMemAlloc: NCCL then
// moves the bytes between the staging buffers of the two GPUs directly, not through its
// own FIFO, which leaves memory bandwidth and SMs to the copies next to it (on 2 H200s,
// a/b rose from 0.74 to 0.85; docs/PERFORMANCE.md).
#include "eplb/transport/nccl_transport.hpp"

#include <fmt/format.h>

#include <cstring>

#include "detail.hpp"
#include "eplb/transport/nccl_detail.hpp"
#include "nccl_impl.hpp"

namespace eplb::transport {

using core::Clock;
using core::Error;
using core::ErrorKind;
using core::seconds_since;

// nccl_exchange.cpp: one exchange() through the pipeline.
void run_exchange(NcclTransport::Impl& impl, std::span<const Transfer> sends,
                  std::span<const Transfer> recvs, int max_peers);

NcclTransport::NcclTransport(Start start, const TransportOptions& options)
    : impl_(std::make_unique<Impl>(std::move(start), options)) {
  // EPLB_NCCL_SETUP=foreground (docs/CLI.md): finish the set-up here, before the caller
  // reads anything, as before the set-up moved to the background; for side-by-side
  // measurements (bench/e2e_disk.sh). NOTE: the same on every rank (the job's environment).
  const char* mode = std::getenv("EPLB_NCCL_SETUP");
  if (mode != nullptr && std::string_view(mode) == "foreground") impl_->ready();
}

NcclTransport::~NcclTransport() = default;

int NcclTransport::rank() const { return impl_->rank; }
int NcclTransport::size() const { return impl_->size; }
ncclComm_t NcclTransport::comm() const {
  EPLB_ASSERT(!impl_->setup && "NcclTransport::comm() before wait_ready()");
  return impl_->nccl.get();
}
cudaStream_t NcclTransport::stream() const {
  EPLB_ASSERT(impl_->dev && "NcclTransport::stream() before wait_ready()");
  return impl_->dev->comm_stream.get();
}
int NcclTransport::device() const { return impl_->device; }

void NcclTransport::wait_ready() {
  impl_->check_usable();
  impl_->ready();
}

SetupTimes NcclTransport::setup_times() const { return impl_->times; }

void NcclTransport::exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs,
                             int max_peers) {
  impl_->check_usable();
  detail::validate_transfers(sends, recvs, impl_->rank, impl_->size, "NCCL");
  impl_->ready();  // the first exchange waits for the set-up begun by the constructor
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  impl_->guarded([&] { run_exchange(*impl_, sends, recvs, max_peers); });
}

std::vector<long long> NcclTransport::all_max(const std::vector<long long>& values,
                                              std::string_view phase) {
  impl_->check_usable();
  impl_->ready();
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return impl_->guarded([&] { return impl_->all_max(values, phase); });
}

HostBuffer NcclTransport::allocate_host(size_t bytes) {
  if (bytes == 0) return {};
  const auto start = Clock::now();
  HostBuffer buffer;
  if (impl_->setup) {
    // Still setting up: usable at once (the caller reads into it), page-locked by the
    // set-up, which would otherwise hold this thread for the CUDA context and the pinning.
    buffer = detail::allocate_lockable(bytes, impl_->device);
  } else {
    EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
    runtime::PinnedBuffer pinned(bytes);
    buffer = HostBuffer(pinned.release(), bytes, &runtime::PinnedBuffer::free_pinned);
  }
  impl_->times.seconds_host_alloc += seconds_since(start);
  return buffer;
}

runtime::DeviceBuffer NcclTransport::allocate_device(size_t bytes) const {
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return runtime::DeviceBuffer(bytes);
}

runtime::NcclRegistration NcclTransport::register_buffer(const runtime::DeviceBuffer& buffer) {
  EPLB_ASSERT(!impl_->setup && "NcclTransport::register_buffer() before wait_ready()");
  EPLB_CUDA_CHECK(cudaSetDevice(impl_->device));
  return impl_->guarded([&] {
    return runtime::NcclRegistration(impl_->nccl, buffer.data(), buffer.size(),
                                     runtime::Deadline(impl_->options.timeout));
  });
}

void NcclTransport::group_end(const char* what) {
  impl_->guarded([&] { impl_->nccl.group_end(what, runtime::Deadline(impl_->options.timeout)); });
}

void NcclTransport::wait(cudaStream_t stream, const char* what) {
  impl_->guarded([&] {
    const runtime::Deadline deadline(impl_->options.timeout);
    const bool done = runtime::poll_until(
        [&] {
          cudaError_t rc = cudaStreamQuery(stream);
          if (rc == cudaSuccess) return true;
          if (rc != cudaErrorNotReady) runtime::check_cuda(rc, what, __FILE__, __LINE__);
          ncclResult_t state = impl_->nccl.async_error();
          if (state != ncclSuccess && state != ncclInProgress) {
            throw Error(ErrorKind::kComm,
                        fmt::format("NCCL {} failed: {}", what, ncclGetErrorString(state)));
          }
          return false;
        },
        deadline);
    if (!done) {
      throw Error(ErrorKind::kComm,
                  fmt::format("NCCL {} timed out after {}", what, deadline.timeout_text()));
    }
  });
}

void NcclTransport::close() {
  if (impl_->closed || impl_->failed) return;
  // Teardown is collective: a transport that never exchanged finishes its set-up first.
  impl_->ready();
  // Deregister the staging buffer while the communicator is whole: destroying a communicator
  // that still holds a registration crashed inside ncclCommDestroy on 4 H200s (4 processes,
  // NCCL 2.28), where 2 processes did not.
  impl_->staging_registration.reset();
  impl_->guarded([&] { impl_->nccl.close(runtime::Deadline(impl_->options.timeout)); });
  if (impl_->control) impl_->control->close();
  impl_->closed = true;
}

GpuChoice probe_gpu(int node_rank) {
  GpuChoice choice;
  int num_devices = 0;
  if (cudaGetDeviceCount(&num_devices) != cudaSuccess || num_devices <= 0) return choice;
  choice.num_visible = num_devices;
  choice.device = gpu_for(node_rank, num_devices);
  char bus_id[64] = {};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), choice.device) == cudaSuccess) {
    choice.pci_bus_id = bus_id;
  }
  return choice;
}

bool nccl_built() { return true; }

bool nccl_available(int processes_on_node) {
  int num_devices = 0;
  return cudaGetDeviceCount(&num_devices) == cudaSuccess && num_devices > 0 &&
         num_devices >= processes_on_node;
}

NcclId new_nccl_id() {
  ncclUniqueId id{};
  EPLB_NCCL_CHECK(ncclGetUniqueId(&id));
  static_assert(sizeof(id) == kNcclIdBytes);
  NcclId out;
  std::memcpy(out.data(), &id, sizeof(id));
  return out;
}

std::unique_ptr<Transport> make_nccl_transport(const NcclId& id, int rank, int size, int device,
                                               const TransportOptions& options,
                                               std::unique_ptr<Control> control) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw Error(ErrorKind::kUsage,
                fmt::format("NCCL transport: rank {} is not in [0, {})", rank, size));
  }
  NcclTransport::Start start;
  start.boot.emplace();
  std::memcpy(&start.boot->id, id.data(), id.size());
  start.boot->rank = rank;
  start.boot->size = size;
  start.device = device;
  start.control = std::move(control);
  return std::make_unique<NcclTransport>(std::move(start), options);
}

std::unique_ptr<Transport> make_nccl_transport_from_comm(void* nccl_comm, void* cuda_stream,
                                                         const TransportOptions& options) {
  if (nccl_comm == nullptr) {
    throw Error(ErrorKind::kUsage, "NCCL transport: the caller's communicator is null");
  }
  NcclTransport::Start start;
  start.borrowed = static_cast<ncclComm_t>(nccl_comm);
  start.caller_stream = static_cast<cudaStream_t>(cuda_stream);
  return std::make_unique<NcclTransport>(std::move(start), options);
}

}  // namespace eplb::transport
