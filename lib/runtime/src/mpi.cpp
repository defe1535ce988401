#include "eplb/runtime/mpi.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
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

MpiSession::MpiSession(int* argc, char*** argv, std::chrono::milliseconds timeout)
    : timeout_(timeout) {
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

  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  EPLB_MPI_CHECK(MPI_Get_processor_name(name, &length));
  host_.assign(name, static_cast<size_t>(length));
  gather_hosts(node.get());
  node.close();
}

void MpiSession::gather_hosts(MPI_Comm node_comm) {
  // Each process contributes its node's lowest world rank (the node communicator was split
  // with the world rank as key, so its rank 0 is that) and its host name.
  struct Entry {
    int leader = 0;
    char name[MPI_MAX_PROCESSOR_NAME] = {};
  };
  Entry mine;
  mine.leader = rank_;
  EPLB_MPI_CHECK(MPI_Bcast(&mine.leader, 1, MPI_INT, 0, node_comm));
  host_.copy(mine.name, sizeof(mine.name) - 1);
  std::vector<Entry> all(static_cast<size_t>(size_));
  EPLB_MPI_CHECK(MPI_Allgather(&mine, static_cast<int>(sizeof(Entry)), MPI_BYTE, all.data(),
                               static_cast<int>(sizeof(Entry)), MPI_BYTE, MPI_COMM_WORLD));
  hosts_.clear();
  node_of_rank_.assign(static_cast<size_t>(size_), -1);
  num_nodes_ = 0;
  for (size_t r = 0; r < all.size(); ++r) {
    hosts_.emplace_back(all[r].name);
    const auto leader = static_cast<size_t>(all[r].leader);
    // Leaders come first in rank order, so a node's index is known before its other ranks.
    node_of_rank_[r] = leader == r ? num_nodes_++ : node_of_rank_[leader];
  }
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

void MpiComm::close() {
  if (!comm_) return;
  MPI_Comm comm = comm_.release();
  EPLB_MPI_CHECK(MPI_Comm_free(&comm));
}

void MpiComm::Traits::close(MPI_Comm comm) noexcept {
  if (!mpi_finalized()) MPI_Comm_free(&comm);
}

namespace {

// Who has reached one collective. Every rank tells rank 0 and rank 0 tells every rank, with
// one int each way, posted before the collective itself: so when the collective times out,
// rank 0 knows which ranks never came and the others know whether rank 0 did.
class RollCall {
 public:
  explicit RollCall(MPI_Comm comm) : comm_(comm) {
    EPLB_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
    EPLB_MPI_CHECK(MPI_Comm_size(comm, &size_));
    if (size_ == 1) return;
    arrived_ = std::make_unique<int[]>(static_cast<size_t>(size_));
    // NOTE: receives are matched in posting order per (source, tag): every rank runs the
    // same sequence of collectives, so notice k always meets collective k.
    if (rank_ == 0) {
      for (int peer = 1; peer < size_; ++peer) post_recv(peer);
      for (int peer = 1; peer < size_; ++peer) post_send(peer);
    } else {
      post_recv(0);
      post_send(0);
    }
  }
  ~RollCall() {
    if (complete()) return;
    // A timeout: the job is about to be aborted. Cancel what can be; a receive that still
    // completes later writes into `arrived_`, which is therefore left allocated.
    for (auto& req : requests_) {
      if (req == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&req);
      MPI_Request_free(&req);
    }
    (void)arrived_.release();
  }
  RollCall(const RollCall&) = delete;
  RollCall& operator=(const RollCall&) = delete;

  // Local: tests the pending notices; true when one completed since the last call.
  bool test() {
    if (complete()) return false;
    int done = 0;
    std::vector<int> indices(requests_.size());
    EPLB_MPI_CHECK(MPI_Testsome(static_cast<int>(requests_.size()), requests_.data(), &done,
                                indices.data(), MPI_STATUSES_IGNORE));
    if (done == MPI_UNDEFINED) {
      num_pending_ = 0;
      return false;
    }
    num_pending_ -= static_cast<size_t>(done);
    return done > 0;
  }
  bool complete() const { return num_pending_ == 0; }

  // The silent ranks, as this rank knows them (see the header's contract).
  std::string who_is_missing() const {
    if (rank_ == 0) {
      std::vector<int> missing;
      for (size_t i = 0; i < recv_peers_.size(); ++i) {
        if (requests_[i] != MPI_REQUEST_NULL) missing.push_back(recv_peers_[i]);
      }
      if (missing.empty()) return "every rank reached it, but it did not complete";
      std::string list;
      for (int r : missing) list += fmt::format("{}{}", list.empty() ? "" : ", ", r);
      return fmt::format("{} {} did not reach it", missing.size() == 1 ? "rank" : "ranks", list);
    }
    if (requests_.empty() || requests_[0] != MPI_REQUEST_NULL) return "rank 0 did not reach it";
    return "rank 0 reached it and names the ranks that did not";
  }

 private:
  void post_recv(int peer) {
    MPI_Request req = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(
        MPI_Irecv(&arrived_[recv_peers_.size()], 1, MPI_INT, peer, kRollCallTag, comm_, &req));
    recv_peers_.push_back(peer);
    requests_.push_back(req);
    ++num_pending_;
  }
  void post_send(int peer) {
    static const int kHere = 1;
    MPI_Request req = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Isend(&kHere, 1, MPI_INT, peer, kRollCallTag, comm_, &req));
    requests_.push_back(req);
    ++num_pending_;
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<int[]> arrived_;     // one notice per peer (rank 0) or from rank 0
  std::vector<int> recv_peers_;        // the peer of requests_[i] for the receives first
  std::vector<MPI_Request> requests_;  // receives, then sends
  size_t num_pending_ = 0;
};

// One collective's buffers, kept alive past a timeout: a collective cannot be cancelled,
// so a late completion must still write into live memory (the job is being aborted).
template <typename T>
struct Buffers {
  std::unique_ptr<T> data;
  ~Buffers() {
    if (leak) (void)data.release();
  }
  bool leak = false;
};

// Completes a non-blocking collective started right after `roll` was posted, polling both
// against group.timeout: a peer that is stuck (not dead: mpirun ends the job for those)
// must not hang everyone.
void wait_collective(const Group& group, MPI_Request& request, RollCall& roll,
                     std::string_view call, std::string_view phase) {
  const Deadline deadline(group.timeout);
  bool collective_done = false;
  const bool done = poll_until(
      [&] {
        bool moved = roll.test();
        if (!collective_done) {
          int flag = 0;
          EPLB_MPI_CHECK(MPI_Test(&request, &flag, MPI_STATUS_IGNORE));
          if (flag != 0) collective_done = moved = true;
        }
        if (collective_done && roll.complete()) return Poll::kDone;
        return moved ? Poll::kProgress : Poll::kIdle;
      },
      deadline);
  if (!done) {
    throw core::Error(core::ErrorKind::kComm,
                      fmt::format("{}: {} timed out after {}: {}", phase, call,
                                  deadline.timeout_text(), roll.who_is_missing()));
  }
}

// Starts a collective (`start` posts it and returns its request) and waits for it.
template <typename Start>
void run_collective(const Group& group, std::string_view call, std::string_view phase,
                    Start&& start) {
  RollCall roll(group.comm);
  MPI_Request request = start();
  wait_collective(group, request, roll, call, phase);
}

}  // namespace

bool all_true(const Group& group, bool local_ok, std::string_view phase) {
  Buffers<int[]> b{std::make_unique<int[]>(2)};
  b.data[0] = local_ok ? 1 : 0;
  b.leak = true;
  run_collective(group, "MPI_Allreduce", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(
        MPI_Iallreduce(&b.data[0], &b.data[1], 1, MPI_INT, MPI_MIN, group.comm, &request));
    return request;
  });
  b.leak = false;
  return b.data[1] != 0;
}

std::vector<std::string> gather_lines(const Group& group, const std::vector<std::string>& lines,
                                      std::string_view phase) {
  // Wire format per rank: for each line, a uint64 length then its bytes (lines may hold
  // any byte, newlines included).
  struct State {
    std::string packed;
    int my_bytes = 0;
    std::vector<int> counts, displs;
    std::string all;
  };
  Buffers<State> b{std::make_unique<State>()};
  State& st = *b.data;
  for (const auto& line : lines) {
    uint64_t n = line.size();
    st.packed.append(reinterpret_cast<const char*>(&n), sizeof(n));
    st.packed.append(line);
  }
  int rank = 0, size = 1;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(group.comm, &size));
  const size_t num_counts = rank == 0 ? static_cast<size_t>(size) : 0;
  st.my_bytes = to_count(st.packed.size(), "gathered lines");
  st.counts.resize(num_counts);
  st.displs.resize(num_counts);
  b.leak = true;
  run_collective(group, "MPI_Gather (line counts)", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Igather(&st.my_bytes, 1, MPI_INT, st.counts.data(), 1, MPI_INT, 0,
                               group.comm, &request));
    return request;
  });
  size_t total = 0;
  for (size_t r = 0; r < st.counts.size(); ++r) {
    st.displs[r] = to_count(total, "gathered lines");
    total += static_cast<size_t>(st.counts[r]);
  }
  st.all.assign(total, '\0');
  run_collective(group, "MPI_Gatherv (lines)", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Igatherv(st.packed.data(), st.my_bytes, MPI_CHAR, st.all.data(),
                                st.counts.data(), st.displs.data(), MPI_CHAR, 0, group.comm,
                                &request));
    return request;
  });
  b.leak = false;
  std::vector<std::string> out;
  for (size_t pos = 0; pos + sizeof(uint64_t) <= st.all.size();) {
    uint64_t n = 0;
    std::memcpy(&n, st.all.data() + pos, sizeof(n));
    pos += sizeof(n);
    out.push_back(st.all.substr(pos, n));
    pos += n;
  }
  return out;
}

std::string broadcast_string(const Group& group, const std::string& value, std::string_view phase,
                             int root) {
  int rank = 0;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  Buffers<uint64_t> length{std::make_unique<uint64_t>(rank == root ? value.size() : 0)};
  length.leak = true;
  run_collective(group, "MPI_Bcast (length)", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Ibcast(length.data.get(), 1, MPI_UINT64_T, root, group.comm, &request));
    return request;
  });
  length.leak = false;
  std::string out = rank == root ? value : std::string(*length.data, '\0');
  broadcast_bytes(group, std::as_writable_bytes(std::span<char>(out.data(), out.size())), phase,
                  root);
  return out;
}

void broadcast_bytes(const Group& group, std::span<std::byte> bytes, std::string_view phase,
                     int root) {
  // The caller's buffer: on a timeout the job ends before it is reused.
  run_collective(group, "MPI_Bcast", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Ibcast(bytes.data(), to_count(bytes.size(), "broadcast bytes"), MPI_BYTE,
                              root, group.comm, &request));
    return request;
  });
}

namespace {
std::vector<long long> all_reduce(const Group& group, const std::vector<long long>& values,
                                  MPI_Op op, std::string_view phase) {
  struct State {
    std::vector<long long> in, out;
  };
  Buffers<State> b{std::make_unique<State>(State{values, std::vector<long long>(values.size())})};
  b.leak = true;
  run_collective(group, "MPI_Allreduce", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Iallreduce(b.data->in.data(), b.data->out.data(),
                                  to_count(values.size(), "reduced values"), MPI_LONG_LONG, op,
                                  group.comm, &request));
    return request;
  });
  b.leak = false;
  return std::move(b.data->out);
}
}  // namespace

std::vector<long long> all_max(const Group& group, const std::vector<long long>& values,
                               std::string_view phase) {
  return all_reduce(group, values, MPI_MAX, phase);
}

std::vector<long long> all_sum(const Group& group, const std::vector<long long>& values,
                               std::string_view phase) {
  return all_reduce(group, values, MPI_SUM, phase);
}

void barrier(const Group& group, std::string_view phase) {
  run_collective(group, "MPI_Barrier", phase, [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    EPLB_MPI_CHECK(MPI_Ibarrier(group.comm, &request));
    return request;
  });
}

}  // namespace eplb::runtime
