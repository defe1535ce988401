// libeplb_mpi's additions to the C ABI: communicators made from MPI (eplb_mpi.h).
#include "eplb/eplb_mpi.h"

#include <fmt/format.h>

#include "capi_handles.hpp"
#include "eplb/core/error.hpp"
#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/mpi_transport.hpp"

namespace {

bool g_initialized_mpi = false;  // eplb_comm_from_mpi_world called MPI_Init_thread

// The node-local rank (MPI_COMM_TYPE_SHARED), which picks the GPU.
int node_rank_of(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  EPLB_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int rank = 0;
  const int rc = MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  EPLB_MPI_CHECK(rc);
  return rank;
}

}  // namespace

extern "C" {

eplb_status eplb_comm_from_mpi(MPI_Comm comm, eplb_backend backend,
                               const eplb_comm_options* options, eplb_comm_t* out) {
  using eplb::capi::require;
  return eplb::capi::guarded(nullptr, [&] {
    require(out != nullptr, "out must not be NULL");
    require(backend == EPLB_BACKEND_MPI || backend == EPLB_BACKEND_NCCL,
            "backend must be EPLB_BACKEND_MPI or EPLB_BACKEND_NCCL");
    *out = nullptr;
    int initialized = 0;
    MPI_Initialized(&initialized);
    require(initialized != 0, "MPI is not initialized: call MPI_Init or eplb_comm_from_mpi_world");
    const auto t = eplb::capi::transport_options(options);
    auto c = std::make_unique<eplb_comm_s>();
    c->timeout = t.timeout;
    c->transport_staging = t.device_staging_bytes;
    c->transport = backend == EPLB_BACKEND_NCCL
                       ? eplb::transport::make_nccl_transport(comm, node_rank_of(comm), t)
                       : eplb::transport::make_mpi_transport(comm, t);
    // NCCL sets up in the background: finished (and agreed on) here, within the timeout.
    if (backend == EPLB_BACKEND_NCCL) c->transport->all_max({0}, "the NCCL communicator's set-up");
    *out = c.release();
  });
}

eplb_status eplb_comm_from_mpi_world(eplb_backend backend, const eplb_comm_options* options,
                                     eplb_comm_t* out) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized == 0) {
    int provided = 0;
    // The asynchronous API runs exchanges on a worker thread, one thread at a time.
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      eplb::capi::set_last_error("MPI_Init_thread failed");
      return EPLB_ERR_COMM;
    }
    g_initialized_mpi = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (provided < MPI_THREAD_SERIALIZED) {
      eplb::capi::set_last_error(fmt::format(
          "MPI gives thread level {}, the library needs MPI_THREAD_SERIALIZED", provided));
      return EPLB_ERR_UNAVAILABLE;
    }
  }
  return eplb_comm_from_mpi(MPI_COMM_WORLD, backend, options, out);
}

eplb_status eplb_mpi_finalize(void) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_initialized_mpi && finalized == 0) MPI_Finalize();
  g_initialized_mpi = false;
  return EPLB_OK;
}

}  // extern "C"
