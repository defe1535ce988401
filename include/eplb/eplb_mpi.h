/*
 * eplb_mpi.h: communicators made from MPI, for CPU-only processes (host tensors over the MPI
 * backend) and for jobs launched by mpirun/srun (NCCL bootstrapped over MPI). In
 * libeplb_mpi.so, which is libeplb.so's whole interface plus these functions and links
 * Open MPI; a process loads one of the two libraries, not both. Contract: eplb.h's.
 */
#ifndef EPLB_EPLB_MPI_H
#define EPLB_EPLB_MPI_H

#include <mpi.h>

#include "eplb/eplb.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum eplb_backend {
  EPLB_BACKEND_MPI = 0, /* host memory, point-to-point over MPI */
  EPLB_BACKEND_NCCL = 1 /* CUDA memory, NCCL bootstrapped and agreed over MPI */
} eplb_backend;

/* Collective over `comm` (duplicated inside): a communicator of the given backend. With
 * EPLB_BACKEND_NCCL each process takes the GPU of its node-local rank (the only visible one
 * when there is one), and every rank agrees that each has one first. */
EPLB_API eplb_status eplb_comm_from_mpi(MPI_Comm comm, eplb_backend backend,
                                        const eplb_comm_options* options, eplb_comm_t* out);

/* Collective over MPI_COMM_WORLD, initializing MPI (MPI_THREAD_MULTIPLE requested) if nobody
 * has: for callers without mpi.h (Python's ctypes under mpirun). */
EPLB_API eplb_status eplb_comm_from_mpi_world(eplb_backend backend,
                                              const eplb_comm_options* options, eplb_comm_t* out);

/* Local (MPI_Finalize is collective in MPI's sense): finalizes MPI if this library
 * initialized it; every communicator must be destroyed first. */
EPLB_API eplb_status eplb_mpi_finalize(void);

#ifdef __cplusplus
}
#endif

#endif /* EPLB_EPLB_MPI_H */
