/* The C ABI (include/eplb/eplb.h, eplb_mpi.h) driven from C11, on host memory over MPI:
 *   mpirun -np 2 test_capi
 * Plans, refusals, the blocking rearrangement, the per-layer asynchronous one, a profile run,
 * an agreement, and a silent peer (a timeout that names it, then a communicator that refuses
 * at once). Exits 1 if any check failed on this rank. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "eplb/eplb_mpi.h"

static int g_rank = 0, g_failed = 0, g_checks = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    ++g_checks;                                                                \
    if (!(cond)) {                                                             \
      ++g_failed;                                                              \
      fprintf(stderr, "[rank %d] FAILED %s:%d: ", g_rank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

#define OK(call)                                                                                \
  do {                                                                                          \
    eplb_status s_ = (call);                                                                    \
    CHECK(s_ == EPLB_OK, "%s returned %s: %s", #call, eplb_status_name(s_), eplb_last_error()); \
  } while (0)

enum { kRanks = 2, kRows = 2, kLayers = 3, kTensors = 2 };
static const int64_t kRowBytes[kTensors] = {24, 7};

/* The bytes of logical expert e, tensor k, layer l; byte i. */
static uint8_t pattern(int l, int k, int64_t e, int64_t i) {
  return (uint8_t)(e * 37 + l * 11 + k * 5 + i * 3 + 1);
}

/* This rank's tensors for `map` (garbage 0xEE in empty slots). */
static void fill(uint8_t* data[kLayers][kTensors], const int64_t map[kLayers][kRanks * kRows]) {
  for (int l = 0; l < kLayers; ++l)
    for (int k = 0; k < kTensors; ++k)
      for (int r = 0; r < kRows; ++r) {
        const int64_t e = map[l][g_rank * kRows + r];
        for (int64_t i = 0; i < kRowBytes[k]; ++i)
          data[l][k][r * kRowBytes[k] + i] = e < 0 ? 0xEE : pattern(l, k, e, i);
      }
}

/* Whether this rank's tensors hold `map`'s experts (zeros in empty slots). */
static int holds(uint8_t* data[kLayers][kTensors], const int64_t map[kLayers][kRanks * kRows]) {
  for (int l = 0; l < kLayers; ++l)
    for (int k = 0; k < kTensors; ++k)
      for (int r = 0; r < kRows; ++r) {
        const int64_t e = map[l][g_rank * kRows + r];
        for (int64_t i = 0; i < kRowBytes[k]; ++i) {
          const uint8_t want = e < 0 ? 0 : pattern(l, k, e, i);
          if (data[l][k][r * kRowBytes[k] + i] != want) return 0;
        }
      }
  return 1;
}

static const int64_t kOld[kLayers][kRanks * kRows] = {{0, 1, 2, 3}, {0, 1, 2, 3}, {3, 2, 1, 0}};
/* Layer 0: brief vector 2 (a swap across ranks); layer 1: unchanged; layer 2: replicas and an
 * empty slot (expert 1 dropped, allowed). */
static const int64_t kNew[kLayers][kRanks * kRows] = {{2, 1, 0, 3}, {0, 1, 2, 3}, {3, 3, -1, 0}};

static void nap(void) {
  const struct timespec t = {0, 100000};
  nanosleep(&t, NULL);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static eplb_rebalancer_t make(eplb_comm_t comm, eplb_plan_t plan, uint8_t* data[kLayers][kTensors],
                              int profile, int64_t row_bytes_0, eplb_status* status) {
  eplb_tensor tensors[kLayers * kTensors];
  for (int l = 0; l < kLayers; ++l)
    for (int k = 0; k < kTensors; ++k) {
      eplb_tensor* t = &tensors[l * kTensors + k];
      t->data = data[l][k];
      t->num_rows = kRows;
      t->row_bytes = k == 0 ? row_bytes_0 : kRowBytes[k];
      t->tag = (uint64_t)(k + 1);
    }
  eplb_rearrange_options options;
  eplb_rearrange_options_init(&options);
  options.profile = profile;
  eplb_rebalancer_t rb = NULL;
  *status = eplb_rebalancer_create(comm, plan, tensors, kTensors, &options, &rb);
  return rb;
}

int main(void) {
  uint8_t* data[kLayers][kTensors];
  for (int l = 0; l < kLayers; ++l)
    for (int k = 0; k < kTensors; ++k) data[l][k] = malloc((size_t)(kRows * kRowBytes[k]));

  CHECK(eplb_version() == EPLB_VERSION, "library %d, header %d", eplb_version(), EPLB_VERSION);
  CHECK(strstr(eplb_build_info(), "eplb 0.2.0") != NULL, "build info: %s", eplb_build_info());
  CHECK(strcmp(eplb_status_name(EPLB_ERR_TIMEOUT), "EPLB_ERR_TIMEOUT") == 0, "status name");

  eplb_comm_options copts;
  eplb_comm_options_init(&copts);
  CHECK(copts.timeout_ms == 600000, "default timeout %lld", (long long)copts.timeout_ms);
  copts.timeout_ms = 3000;
  eplb_comm_t comm = NULL;
  OK(eplb_comm_from_mpi_world(EPLB_BACKEND_MPI, &copts, &comm));
  int size = 0;
  OK(eplb_comm_rank(comm, &g_rank, &size));
  CHECK(size == kRanks, "run with mpirun -np %d (got %d)", kRanks, size);
  if (size != kRanks) return 77;
  CHECK(strcmp(eplb_comm_backend(comm), "mpi") == 0, "backend %s", eplb_comm_backend(comm));

  /* Plans: a new expert that no old slot holds, a dropped expert, then the good one. */
  eplb_plan_t plan = NULL;
  int64_t absent[kLayers][kRanks * kRows];
  memcpy(absent, kNew, sizeof(absent));
  absent[1][0] = 9;
  CHECK(eplb_plan_create(&kOld[0][0], kRanks, kRows, &absent[0][0], kRanks, kRows, kLayers, NULL,
                         EPLB_ALLOW_DROPPING_EXPERTS, &plan) == EPLB_ERR_INPUT,
        "an absent expert accepted");
  CHECK(strstr(eplb_last_error(), "layer 1") != NULL, "message: %s", eplb_last_error());
  CHECK(eplb_plan_create(&kOld[0][0], kRanks, kRows, &kNew[0][0], kRanks, kRows, kLayers, NULL, 0,
                         &plan) == EPLB_ERR_INPUT,
        "a dropped expert accepted without EPLB_ALLOW_DROPPING_EXPERTS");
  CHECK(eplb_plan_create(NULL, kRanks, kRows, &kNew[0][0], kRanks, kRows, kLayers, NULL, 0,
                         &plan) == EPLB_ERR_USAGE,
        "a NULL map accepted");
  OK(eplb_plan_create(&kOld[0][0], kRanks, kRows, &kNew[0][0], kRanks, kRows, kLayers, NULL,
                      EPLB_ALLOW_DROPPING_EXPERTS, &plan));
  eplb_plan_stats stats;
  OK(eplb_plan_stats_get(plan, &stats));
  /* Layer 0: each rank receives one expert; layer 2: rank 0 receives nothing (3 is local
   * twice: unchanged and a local copy), rank 1 receives... 0 is unchanged at row 1; -1 empty. */
  CHECK(stats.num_layers == kLayers && stats.experts_moved == 2 && stats.rows_empty == 1,
        "stats: layers %lld moved %lld empty %lld", (long long)stats.num_layers,
        (long long)stats.experts_moved, (long long)stats.rows_empty);
  CHECK(stats.experts_moved == stats.min_experts_required, "more moved than required");

  /* The blocking rearrangement. */
  eplb_status status;
  fill(data, kOld);
  eplb_rebalancer_t rb = make(comm, plan, data, 0, kRowBytes[0], &status);
  CHECK(status == EPLB_OK, "create: %s", eplb_last_error());
  eplb_report report;
  OK(eplb_rearrange(rb, &report));
  CHECK(holds(data, kNew), "after eplb_rearrange the tensors do not hold the new map");
  /* One expert's rows and their two checksums (verify is on by default). */
  CHECK(report.bytes_sent == kRowBytes[0] + kRowBytes[1] + 2 * 8, "sent %lld",
        (long long)report.bytes_sent);
  OK(eplb_rebalancer_destroy(rb));

  /* The asynchronous one, layer by layer. */
  fill(data, kOld);
  rb = make(comm, plan, data, 0, kRowBytes[0], &status);
  CHECK(status == EPLB_OK, "create: %s", eplb_last_error());
  CHECK(eplb_layer_finish(rb, 0, NULL, &report) == EPLB_ERR_USAGE, "finish before start");
  for (int l = 0; l < kLayers; ++l) {
    OK(eplb_layer_start(rb, l, NULL));
    CHECK(eplb_layer_start(rb, l, NULL) == EPLB_ERR_USAGE, "two layers started at once");
    eplb_status s;
    while ((s = eplb_layer_test(rb, l)) == EPLB_NOT_READY) nap();
    CHECK(s == EPLB_OK, "test: %s", eplb_status_name(s));
    OK(eplb_layer_finish(rb, l, NULL, &report));
  }
  CHECK(holds(data, kNew), "after the layers the tensors do not hold the new map");
  OK(eplb_rebalancer_destroy(rb));

  /* A profile run allocates and agrees, and moves nothing. */
  fill(data, kOld);
  rb = make(comm, plan, data, 1, kRowBytes[0], &status);
  OK(eplb_rearrange(rb, &report));
  CHECK(holds(data, kOld) && report.staging_bytes > 0 && report.bytes_sent == 0,
        "profile: staging %lld, sent %lld", (long long)report.staging_bytes,
        (long long)report.bytes_sent);
  OK(eplb_rebalancer_destroy(rb));

  /* Tensors that differ between ranks: every rank refuses, nothing moves. */
  fill(data, kOld);
  rb = make(comm, plan, data, 0, g_rank == 1 ? kRowBytes[0] - 8 : kRowBytes[0], &status);
  CHECK(status == EPLB_ERR_INPUT && rb == NULL, "differing tensors: %s", eplb_status_name(status));
  CHECK(strstr(eplb_last_error(), "different tensors") != NULL, "message: %s", eplb_last_error());
  CHECK(strstr(eplb_last_error(), g_rank == 0 ? "[rank 0/2]" : "[rank 1/2]") != NULL,
        "the message names the rank: %s", eplb_last_error());
  CHECK(holds(data, kOld), "a refusal moved bytes");

  /* A row corrupted on its way into rank 1 (EPLB_FAULT_CORRUPT_ROW): every rank refuses to
   * place anything, every tensor stays as it was; the same without the check places it. */
  fill(data, kOld);
  rb = make(comm, plan, data, 0, kRowBytes[0], &status);
  setenv("EPLB_FAULT_CORRUPT_ROW", "1", 1);
  status = eplb_rearrange(rb, &report);
  CHECK(status == EPLB_ERR_CORRUPT, "a corrupted row: %s", eplb_status_name(status));
  if (g_rank == 1) {
    CHECK(strstr(eplb_last_error(), "do not match the checksum") != NULL, "message: %s",
          eplb_last_error());
  } else {
    CHECK(strstr(eplb_last_error(), "another rank's received rows") != NULL, "message: %s",
          eplb_last_error());
  }
  CHECK(holds(data, kOld), "a corrupted row was placed (or another row moved)");
  unsetenv("EPLB_FAULT_CORRUPT_ROW");
  OK(eplb_rearrange(rb, &report)); /* the communicator is still usable */
  CHECK(holds(data, kNew), "after a refused corrupted row, a clean run did not place the rows");
  OK(eplb_rebalancer_destroy(rb));

  /* An agreement: rank 1 is not ready. */
  int all_ok = -1;
  int32_t bad[4] = {-1, -1, -1, -1}, num_bad = -1;
  OK(eplb_comm_agree(comm, g_rank != 1, &all_ok, bad, 4, &num_bad));
  CHECK(all_ok == 0 && num_bad == 1 && bad[0] == 1, "agree: ok %d, %d bad, first %d", all_ok,
        num_bad, bad[0]);

  /* A silent peer: rank 1 does not come; rank 0 gives up within the timeout (3 s), names
   * rank 1, and the communicator then refuses at once. */
  fill(data, kOld);
  rb = make(comm, plan, data, 0, kRowBytes[0], &status);
  if (g_rank == 1) sleep(6);
  const double start = now();
  status = eplb_rearrange(rb, &report);
  const double waited = now() - start;
  if (g_rank == 0) {
    CHECK(status == EPLB_ERR_TIMEOUT, "silent peer: %s (%s)", eplb_status_name(status),
          eplb_last_error());
    CHECK(waited > 2.5 && waited < 8.0, "gave up after %.1f s (timeout 3 s)", waited);
    CHECK(strstr(eplb_last_error(), "1") != NULL && strstr(eplb_last_error(), "timed out"),
          "the message names the silent rank: %s", eplb_last_error());
    fprintf(stderr, "[rank 0] silent peer after %.1f s: %s\n", waited, eplb_last_error());
    CHECK(eplb_layer_start(rb, 0, NULL) == EPLB_ERR_COMM, "an aborted communicator was used");
  } else {
    /* The late rank may still complete: small messages travel eagerly, so rank 0's bytes may
     * have left before it gave up. Whatever it gets, it returns. */
    CHECK(status == EPLB_OK || status == EPLB_ERR_TIMEOUT || status == EPLB_ERR_COMM,
          "late rank: %s", eplb_status_name(status));
  }
  OK(eplb_rebalancer_destroy(rb));
  OK(eplb_plan_destroy(plan));
  OK(eplb_comm_destroy(comm));

  printf("[rank %d] test_capi: %d checks, %d failed\n", g_rank, g_checks, g_failed);
  fflush(stdout);
  OK(eplb_mpi_finalize());
  for (int l = 0; l < kLayers; ++l)
    for (int k = 0; k < kTensors; ++k) free(data[l][k]);
  return g_failed ? 1 : 0;
}
