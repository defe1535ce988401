/*
 * eplb.h: the expert-weight exchange of eplb-rebalance as a library (libeplb.so), for a
 * serving engine that moves MoE expert rows between its GPUs (or CPU processes) inside
 * the running server: vLLM's rearrange_expert_weights_inplace and its asynchronous
 * per-layer transfer, with deadlines instead of hangs. C11 and C++17.
 *
 * The contract, once for every function:
 * - Every function returns an eplb_status. On anything but EPLB_OK (and EPLB_NOT_READY),
 *   eplb_last_error() gives the calling thread's message, which names the rank. Nothing
 *   throws across this interface; the library never calls exit, abort or MPI_Abort and
 *   installs no signal handler.
 * - "Collective" means: every rank of the communicator calls it, with the same arguments
 *   where so marked, in the same order relative to the other collective calls on that
 *   communicator. "Local" means: no communication.
 * - Every wait is bounded by the communicator's timeout (eplb_comm_options.timeout_ms).
 *   A timeout returns EPLB_ERR_TIMEOUT naming the ranks that stayed silent where they are
 *   known, and leaves the communicator aborted: every later call on it returns
 *   EPLB_ERR_COMM at once. An NCCL communicator the caller lent (eplb_comm_from_nccl) is
 *   aborted too (ncclCommAbort: its handle is then invalid for the caller as well): the
 *   only way to free a GPU stream that waits for a dead peer.
 * - Handles are opaque, owned by the caller, and released by their _destroy function
 *   (NULL is accepted). A handle is not thread-safe: one thread at a time per handle.
 * - Maps are int64 arrays [num_layers][num_physical_slots], row-major, -1 = empty slot;
 *   physical slot p lives on EP rank p / slots_per_rank, local row p % slots_per_rank.
 *   One process per EP rank: the communicator's size is max(old EP size, new EP size).
 *
 * docs/LIBRARY.md explains threads, streams, memory, errors and deadlines at length.
 */
#ifndef EPLB_EPLB_H
#define EPLB_EPLB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EPLB_VERSION_MAJOR 0
#define EPLB_VERSION_MINOR 2
#define EPLB_VERSION_PATCH 0
/* major * 10000 + minor * 100 + patch, as compiled against. */
#define EPLB_VERSION (EPLB_VERSION_MAJOR * 10000 + EPLB_VERSION_MINOR * 100 + EPLB_VERSION_PATCH)

#if defined(__GNUC__)
#define EPLB_API __attribute__((visibility("default")))
#else
#define EPLB_API
#endif

typedef enum eplb_status {
  EPLB_OK = 0,
  EPLB_NOT_READY = 1,       /* eplb_layer_test: the layer is still moving (not an error) */
  EPLB_ERR_INPUT = 2,       /* maps or tensors wrong or inconsistent between ranks */
  EPLB_ERR_CORRUPT = 3,     /* a moved row did not match its source's checksum: nothing was
                               placed on any rank; the communicator stays usable */
  EPLB_ERR_COMM = 4,        /* a transport call failed; the communicator is aborted */
  EPLB_ERR_TIMEOUT = 5,     /* a deadline passed; the communicator is aborted */
  EPLB_ERR_UNAVAILABLE = 6, /* not in this build (NCCL), or no usable GPU */
  EPLB_ERR_USAGE = 64,      /* a bad argument or call order (NULL, sizes, state) */
  EPLB_ERR_INTERNAL = 70    /* a bug: please report it with the message */
} eplb_status;

/* Local: the library's version (EPLB_VERSION of the build), to compare with the header's. */
EPLB_API int eplb_version(void);
/* Local: "eplb 0.2.0 (commit ..., backends: nccl 2.28.3, host)". Static storage. */
EPLB_API const char* eplb_build_info(void);
/* Local: the message of the last failed call on this thread ("" if none). Valid until the
 * thread's next call into the library. */
EPLB_API const char* eplb_last_error(void);
/* Local: a short name for a status ("EPLB_ERR_TIMEOUT"). Static storage. */
EPLB_API const char* eplb_status_name(eplb_status status);

/* ---------------------------------------------------------------- communicators ----- */

typedef struct eplb_comm_s* eplb_comm_t;

typedef struct eplb_comm_options {
  /* Every wait on this communicator (set-up, agreements, exchanges, layer waits) gives up
   * after this many milliseconds; 0: the default (600000). Same on every rank. */
  int64_t timeout_ms;
  /* NCCL: device memory for the transport's send and receive staging (double-buffered
   * pieces of every peer's stream); 0: the default (256 MiB). */
  size_t transport_staging_bytes;
} eplb_comm_options;

/* Local: fills `options` with the defaults (timeout 600 s, 256 MiB staging). */
EPLB_API void eplb_comm_options_init(eplb_comm_options* options);

/* Collective over `nccl_comm` (an ncclComm_t, passed as void*): wraps the caller's NCCL
 * communicator, creating no second one. `cuda_stream` (a cudaStream_t; may be NULL) is
 * the stream whose earlier work every blocking call waits for. The device is the
 * communicator's. The caller keeps ownership of `nccl_comm` and must not use it for
 * anything else while a call of this library runs on it; eplb_comm_destroy leaves it
 * open, except after a timeout or failure (see the contract above).
 * EPLB_ERR_UNAVAILABLE in a build without NCCL. */
EPLB_API eplb_status eplb_comm_from_nccl(void* nccl_comm, void* cuda_stream,
                                         const eplb_comm_options* options, eplb_comm_t* out);

/* Local: writes a new NCCL unique id (128 bytes) into `unique_id`; one rank calls it and
 * distributes the bytes itself (torch.distributed broadcast, a store, ...). */
EPLB_API eplb_status eplb_nccl_unique_id(void* unique_id, size_t bytes);

/* Collective over the `size` processes that pass the same `unique_id`: creates an NCCL
 * communicator of our own on CUDA device `device` (-1: the current device), bounded by
 * the timeout. For the asynchronous API next to the server's own collectives, a
 * communicator of our own is the safe choice (NCCL orders the operations of one
 * communicator; two threads must not interleave theirs). */
EPLB_API eplb_status eplb_comm_from_unique_id(const void* unique_id, size_t bytes, int rank,
                                              int size, int device,
                                              const eplb_comm_options* options, eplb_comm_t* out);

/* Local: this process's rank and the communicator's size. */
EPLB_API eplb_status eplb_comm_rank(eplb_comm_t comm, int* rank, int* size);
/* Local: "nccl" or "mpi". Static storage. */
EPLB_API const char* eplb_comm_backend(eplb_comm_t comm);

/* Collective: every rank says whether its own inputs are good; `all_ok` is 1 iff every
 * rank's `local_ok` is. `bad_ranks` (may be NULL) receives up to `max_bad` ranks whose
 * local_ok was 0, and `num_bad` (may be NULL) how many there were. For callers that check
 * things of their own before moving anything (the Python package's non-contiguous
 * tensors), so that every rank refuses together instead of some waiting for the others. */
EPLB_API eplb_status eplb_comm_agree(eplb_comm_t comm, int local_ok, int* all_ok,
                                     int32_t* bad_ranks, int32_t max_bad, int32_t* num_bad);

/* Collective on the success path (NCCL teardown of a communicator of our own); after a
 * failure, local. Releases the handle in every case. */
EPLB_API eplb_status eplb_comm_destroy(eplb_comm_t comm);

/* ------------------------------------------------------------------------ plans ----- */

typedef struct eplb_plan_s* eplb_plan_t;

/* Refuse nothing that drops experts: allow a new map that no longer holds a logical expert
 * the old one held (its weights are gone from the GPUs afterwards). */
#define EPLB_ALLOW_DROPPING_EXPERTS 1u

typedef struct eplb_plan_stats {
  int64_t num_layers;
  int64_t experts_moved;          /* received by some rank, summed over layers and ranks */
  int64_t min_experts_required;   /* what any plan must move */
  int64_t busiest_sender_experts; /* per layer the busiest sender's experts, summed */
  int64_t messages;               /* one per (sender, receiver, layer) */
  int64_t rows_unchanged;
  int64_t rows_local; /* filled from the rank's own old rows */
  int64_t rows_empty;
} eplb_plan_stats;

/* Local, pure and deterministic (every rank computes the same plan from the same maps):
 * the exchange from `old_map` [num_layers][old_ep_size * old_slots_per_rank] to
 * `new_map` [num_layers][new_ep_size * new_slots_per_rank]. `rank_mapping` (may be NULL)
 * is vLLM's elastic-EP map, old rank -> new rank or -1, with `old_ep_size` entries; then
 * the maps follow vLLM's rearrange_expert_weights_inplace: on scale-down the new map has
 * the new ranks' slots only, on scale-up the old map the old ranks' only.
 * EPLB_ERR_INPUT listing every problem: a new slot whose logical expert no old slot of that
 * layer holds, a dropped expert (without EPLB_ALLOW_DROPPING_EXPERTS), ids out of range. */
EPLB_API eplb_status eplb_plan_create(const int64_t* old_map, int32_t old_ep_size,
                                      int32_t old_slots_per_rank, const int64_t* new_map,
                                      int32_t new_ep_size, int32_t new_slots_per_rank,
                                      int32_t num_layers, const int32_t* rank_mapping,
                                      uint32_t flags, eplb_plan_t* out);
EPLB_API eplb_status eplb_plan_stats_get(eplb_plan_t plan, eplb_plan_stats* stats);
EPLB_API eplb_status eplb_plan_destroy(eplb_plan_t plan);

/* -------------------------------------------------------------- rearrangement ----- */

/* One tensor of one layer on this rank: rows [num_rows][row_bytes], contiguous, host
 * memory or memory of the communicator's CUDA device. */
typedef struct eplb_tensor {
  void* data;
  int64_t num_rows; /* this rank's physical slots: old slots per rank, or new (same here) */
  int64_t row_bytes;
  /* The identity of the tensor's dtype and per-row shape (any hash of them; 0: not
   * checked). Must be the same on every rank for the same tensor index, and the same for
   * every layer. */
  uint64_t tag;
} eplb_tensor;

typedef struct eplb_rearrange_options {
  /* Device (or host) memory for the rows a layer changes, landing before they are copied
   * into place; 0: what the busiest layer needs. The blocking call groups as many layers
   * per exchange as fit. */
  size_t staging_bytes;
  /* Allocate every buffer, agree on everything, report the bytes, move nothing (vLLM's
   * is_profile). */
  int profile;
  /* 1 (the default of eplb_rearrange_options_init): every row that changes is checked, where
   * it lies (GPU or host), against the checksum of the slot its bytes came from, and every
   * rank agrees before any row is copied into place: a mismatch anywhere returns
   * EPLB_ERR_CORRUPT on every rank and leaves every tensor as it was. 0: no check. */
  int verify;
} eplb_rearrange_options;

typedef struct eplb_report {
  int64_t bytes_sent; /* by this rank */
  int64_t bytes_received;
  int64_t rows_rewritten; /* this rank's rows that changed */
  int64_t staging_bytes;  /* this rank's staging for changed rows */
  int64_t transport_staging_bytes;
  int64_t layers_per_exchange; /* the blocking call's grouping */
  double seconds;              /* wall time of the call on this rank */
} eplb_report;

EPLB_API void eplb_rearrange_options_init(eplb_rearrange_options* options);

typedef struct eplb_rebalancer_s* eplb_rebalancer_t;

/* Collective: binds a plan to this rank's tensors, `tensors[layer * num_tensors + k]` for
 * every layer of the plan. Checks, and agrees on with every rank before returning, that
 * the plan (both maps), the tensor count, each tensor's row bytes and tag agree between
 * ranks and layers, and that each tensor has this rank's slot count as rows; on a problem
 * every rank returns EPLB_ERR_INPUT (the message of the rank that found it names it, the
 * others name that rank), and nothing has moved. Allocates the staging. */
EPLB_API eplb_status eplb_rebalancer_create(eplb_comm_t comm, eplb_plan_t plan,
                                            const eplb_tensor* tensors, int32_t num_tensors,
                                            const eplb_rearrange_options* options,
                                            eplb_rebalancer_t* out);

/* Collective: every layer, in place: on return every tensor holds its new rows (for
 * device tensors: on return the work is done, the caller's stream given at
 * eplb_comm_from_nccl waited for first). With options.profile, moves nothing. */
EPLB_API eplb_status eplb_rearrange(eplb_rebalancer_t rebalancer, eplb_report* report);

/* Collective, asynchronous: starts moving layer `layer` (layers in ascending order, one at
 * a time) after the work already on `cuda_stream` (a cudaStream_t; NULL for host tensors
 * or the legacy stream), into the staging buffer; the tensors are not written. Returns at
 * once. */
EPLB_API eplb_status eplb_layer_start(eplb_rebalancer_t rebalancer, int32_t layer,
                                      void* cuda_stream);
/* Local: EPLB_OK once the started layer has landed in staging, EPLB_NOT_READY before;
 * an error if its exchange failed. Never blocks. */
EPLB_API eplb_status eplb_layer_test(eplb_rebalancer_t rebalancer, int32_t layer);
/* Local: waits (within the timeout) until the started layer has landed, then copies it
 * into place on `cuda_stream` (enqueued: the stream runs the copies; the host does not
 * wait for them) or, for host tensors, before returning. vLLM's move_from_buffer. */
EPLB_API eplb_status eplb_layer_finish(eplb_rebalancer_t rebalancer, int32_t layer,
                                       void* cuda_stream, eplb_report* report);

/* Local (waits for a started layer to end first, within the timeout). */
EPLB_API eplb_status eplb_rebalancer_destroy(eplb_rebalancer_t rebalancer);

#ifdef __cplusplus
}
#endif

#endif /* EPLB_EPLB_H */
