#include "eplb/runtime/mpi.hpp"

#include <fmt/format.h>

#include <chrono>
#include <thread>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>

#include "call_text.hpp"
#include "eplb/core/error.hpp"

namespace eplb::runtime {
namespace {

using detail::base_name;
using detail::short_call;

// MPI counts are int: a larger buffer must be split by the caller, never truncated.
int to_count(size_t n, const char* what) {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw core::Error(
        core::ErrorKind::kInternal,
        fmt::format("internal error: {} of {} elements exceeds an MPI count", what, n));
  }
  return static_cast<int>(n);
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

long env_count(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::strtol(value, nullptr, 10) : 0;
}

bool has_env(const char* name) { return std::getenv(name) != nullptr; }

// srun started several tasks but gave them no process-management interface Open MPI can
// use (the site's default --mpi plugin is not pmix): MPI_Init would then die inside Open
// MPI, or start every task as a job of its own, all writing the same output. docs/CLI.md.
constexpr const char* kSrunHint =
    "srun started {} tasks without an MPI plugin this Open MPI can use ({}): pass "
    "--mpi=pmix to srun (or set SLURM_MPI_TYPE=pmix), or start the job with mpirun inside "
    "the allocation; see scripts/slurm/";

void check_launcher_before_init() {
  const long tasks = env_count("SLURM_STEP_NUM_TASKS");
  if (!has_env("SLURM_PROCID") || tasks <= 1) return;
  if (has_env("PMIX_RANK") || has_env("PMI_RANK") || has_env("PMI_FD") ||
      has_env("OMPI_COMM_WORLD_RANK")) {
    return;
  }
  const char* type = std::getenv("SLURM_MPI_TYPE");
  throw core::Error(
      core::ErrorKind::kComm,
      fmt::format(kSrunHint, tasks,
                  type != nullptr ? fmt::format("SLURM_MPI_TYPE={}", type)
                                  : std::string("no PMIx server in the environment")));
}

void check_launcher_after_init(int size) {
  const long tasks = env_count("SLURM_STEP_NUM_TASKS");
  if (!has_env("SLURM_PROCID") || tasks <= 1 || size != 1 || has_env("OMPI_COMM_WORLD_SIZE")) {
    return;
  }
  throw core::Error(core::ErrorKind::kComm,
                    fmt::format(kSrunHint, tasks, "MPI started this task alone"));
}

}  // namespace

void check_mpi(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) {
    std::snprintf(text, sizeof(text), "MPI error code %d", rc);
  }
  throw core::Error(core::ErrorKind::kComm, fmt::format("{} failed: {} at {}:{}", short_call(call),
                                                        text, base_name(file), line));
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  EPLB_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {  // else an embedding program (a test main) owns MPI's lifetime
    check_launcher_before_init();
    int provided = 0;
    // FUNNELED: only the main thread calls MPI; helper threads (I/O) never do.
    EPLB_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    finalize_ = true;
  }
  EPLB_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  EPLB_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  EPLB_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  if (finalize_) {
    try {
      check_launcher_after_init(size_);
    } catch (...) {  // the destructor of a half-built session does not run
      MPI_Finalize();
      throw;
    }
  }

  // Node-local rank picks the GPU; the node communicator is only needed for that.
  MPI_Comm raw = MPI_COMM_NULL;
  EPLB_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &raw));
  MpiComm node(raw);
  EPLB_MPI_CHECK(MPI_Comm_set_errhandler(node.get(), MPI_ERRORS_RETURN));
  EPLB_MPI_CHECK(MPI_Comm_rank(node.get(), &node_rank_));
  EPLB_MPI_CHECK(MPI_Comm_size(node.get(), &node_size_));
  node.close();

  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  EPLB_MPI_CHECK(MPI_Get_processor_name(name, &length));
  host_.assign(name, static_cast<size_t>(length));
}

MpiSession::~MpiSession() {
  // Errors here cannot be reported usefully and a destructor must not throw.
  if (finalize_ && !mpi_finalized()) MPI_Finalize();
}

void MpiSession::abort_job(int exit_code) const {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  // MPI_Abort does not return on any implementation we know; make sure of it.
  std::_Exit(exit_code);
}

MpiComm MpiComm::dup(MPI_Comm parent) {
  MPI_Comm raw = MPI_COMM_NULL;
  EPLB_MPI_CHECK(MPI_Comm_dup(parent, &raw));
  MpiComm owned(raw);
  EPLB_MPI_CHECK(MPI_Comm_set_errhandler(owned.get(), MPI_ERRORS_RETURN));
  return owned;
}

MpiComm& MpiComm::operator=(MpiComm&& o) noexcept {
  if (this != &o) {
    reset();
    comm_ = o.comm_;
    o.comm_ = MPI_COMM_NULL;
  }
  return *this;
}

void MpiComm::close() {
  if (comm_ == MPI_COMM_NULL) return;
  MPI_Comm comm = comm_;
  comm_ = MPI_COMM_NULL;
  EPLB_MPI_CHECK(MPI_Comm_free(&comm));
}

void MpiComm::reset() noexcept {
  if (comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

namespace {

std::chrono::milliseconds& collective_timeout_ms() {
  static std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  return timeout;
}

// Completes a non-blocking collective, polling against the collective timeout: a peer
// that is stuck (not dead: mpirun ends the job for those) must not hang everyone.
void wait_collective(MPI_Request& request, const char* what) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto timeout = collective_timeout_ms();
  for (;;) {
    int done = 0;
    EPLB_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    const auto waited = Clock::now() - start;
    if (timeout.count() > 0 && waited >= timeout) {
      throw core::Error(core::ErrorKind::kComm,
                        fmt::format("{} timed out after {:g} s: a peer is stuck or gone", what,
                                    std::chrono::duration<double>(timeout).count()));
    }
    if (waited < std::chrono::milliseconds(2)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

}  // namespace

void set_collective_timeout(std::chrono::milliseconds timeout) {
  collective_timeout_ms() = timeout;
}

bool all_true(MPI_Comm comm, bool local_ok) {
  int mine = local_ok ? 1 : 0;
  int all = 0;
  MPI_Request request = MPI_REQUEST_NULL;
  EPLB_MPI_CHECK(MPI_Iallreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm, &request));
  wait_collective(request, "MPI_Allreduce (agreement)");
  return all != 0;
}

std::vector<std::string> gather_lines(MPI_Comm comm, const std::vector<std::string>& lines) {
  // Wire format per rank: for each line, a uint64 length then its bytes (lines may hold
  // any byte, newlines included).
  std::string packed;
  for (const auto& line : lines) {
    uint64_t n = line.size();
    packed.append(reinterpret_cast<const char*>(&n), sizeof(n));
    packed.append(line);
  }
  int rank = 0, size = 1;
  EPLB_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(comm, &size));
  int my_bytes = to_count(packed.size(), "gathered lines");
  std::vector<int> counts(rank == 0 ? size : 0), displs(rank == 0 ? size : 0);
  MPI_Request request = MPI_REQUEST_NULL;
  EPLB_MPI_CHECK(MPI_Igather(&my_bytes, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm, &request));
  wait_collective(request, "MPI_Gather (line counts)");
  size_t total = 0;
  for (int r = 0; r < static_cast<int>(counts.size()); ++r) {
    displs[r] = to_count(total, "gathered lines");
    total += static_cast<size_t>(counts[r]);
  }
  std::string all(total, '\0');
  EPLB_MPI_CHECK(MPI_Igatherv(packed.data(), my_bytes, MPI_CHAR, all.data(), counts.data(),
                              displs.data(), MPI_CHAR, 0, comm, &request));
  wait_collective(request, "MPI_Gatherv (lines)");
  std::vector<std::string> out;
  for (size_t pos = 0; pos + sizeof(uint64_t) <= all.size();) {
    uint64_t n = 0;
    std::memcpy(&n, all.data() + pos, sizeof(n));
    pos += sizeof(n);
    out.push_back(all.substr(pos, n));
    pos += n;
  }
  return out;
}

std::string broadcast_string(MPI_Comm comm, const std::string& value, int root) {
  int rank = 0;
  EPLB_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  uint64_t n = rank == root ? value.size() : 0;
  MPI_Request request = MPI_REQUEST_NULL;
  EPLB_MPI_CHECK(MPI_Ibcast(&n, 1, MPI_UINT64_T, root, comm, &request));
  wait_collective(request, "MPI_Bcast (length)");
  std::string out = rank == root ? value : std::string(n, '\0');
  EPLB_MPI_CHECK(
      MPI_Ibcast(out.data(), to_count(n, "broadcast string"), MPI_CHAR, root, comm, &request));
  wait_collective(request, "MPI_Bcast (string)");
  return out;
}

namespace {
std::vector<long long> all_reduce(MPI_Comm comm, const std::vector<long long>& values, MPI_Op op) {
  std::vector<long long> out(values.size());
  MPI_Request request = MPI_REQUEST_NULL;
  EPLB_MPI_CHECK(MPI_Iallreduce(values.data(), out.data(),
                                to_count(values.size(), "reduced values"), MPI_LONG_LONG, op, comm,
                                &request));
  wait_collective(request, "MPI_Allreduce");
  return out;
}
}  // namespace

std::vector<long long> all_max(MPI_Comm comm, const std::vector<long long>& values) {
  return all_reduce(comm, values, MPI_MAX);
}

std::vector<long long> all_sum(MPI_Comm comm, const std::vector<long long>& values) {
  return all_reduce(comm, values, MPI_SUM);
}

}  // namespace eplb::runtime
