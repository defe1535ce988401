// MPI session and the few collectives the tool needs, with RAII and typed errors.
#pragma once

#include <mpi.h>

#include <chrono>
#include <string>
#include <vector>

namespace eplb::runtime {

// Throws core::Error(kComm) naming the call, the MPI error string, file and line.
void check_mpi(int rc, const char* call, const char* file, int line);
#define EPLB_MPI_CHECK(call) ::eplb::runtime::check_mpi((call), #call, __FILE__, __LINE__)

// Owns MPI_Init_thread/MPI_Finalize. Collective: every process constructs one at start-up.
// Also works without mpirun (a singleton of size 1). If MPI is already initialized (a test
// main), it neither initializes nor finalizes it. Errors on MPI_COMM_WORLD return
// codes (MPI_ERRORS_RETURN) so that they become exceptions instead of silent aborts.
// Throws core::Error(kComm) naming the fix (srun --mpi=pmix) when srun started several
// tasks without a process-management interface that MPI can use (docs/CLI.md).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  MpiSession(MpiSession&&) = delete;
  MpiSession& operator=(MpiSession&&) = delete;

  MPI_Comm comm() const { return MPI_COMM_WORLD; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int node_rank() const { return node_rank_; }  // rank among processes on this node
  int node_size() const { return node_size_; }
  const std::string& host() const { return host_; }

  // Ends the whole job now (MPI_Abort). Only main may call this, on a failure during the
  // exchange where peers may be blocked; it never returns.
  [[noreturn]] void abort_job(int exit_code) const;

 private:
  int rank_ = 0;
  int size_ = 1;
  int node_rank_ = 0;
  int node_size_ = 1;
  std::string host_;
  bool finalize_ = false;
};

// Move-only owner of a communicator this process created (MPI_Comm_dup). Errors on it
// return codes (MPI_ERRORS_RETURN), whatever the parent's handler.
class MpiComm {
 public:
  MpiComm() = default;
  // Local: takes ownership of `owned` (a communicator this process created).
  explicit MpiComm(MPI_Comm owned) noexcept : comm_(owned) {}
  // Collective over `parent`: every process of `parent` calls it, in the same order as
  // every other collective on `parent`.
  static MpiComm dup(MPI_Comm parent);
  ~MpiComm() { reset(); }
  MpiComm(MpiComm&& o) noexcept : comm_(o.comm_) { o.comm_ = MPI_COMM_NULL; }
  MpiComm& operator=(MpiComm&& o) noexcept;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  MPI_Comm get() const { return comm_; }
  explicit operator bool() const { return comm_ != MPI_COMM_NULL; }
  // Collective (MPI_Comm_free): orderly release on the success path; throws on failure.
  void close();

 private:
  // Local: frees the handle, ignoring errors (destructors never throw). Operations still
  // pending on the communicator complete or stay pending; MPI frees it when they are done.
  void reset() noexcept;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// Local: how long the collectives below wait for a peer before throwing
// core::Error(kComm) (default 10 minutes; zero waits forever). Set it to the same value on
// every process.
void set_collective_timeout(std::chrono::milliseconds timeout);

// Collective: true on every rank iff `local_ok` is true on every rank.
bool all_true(MPI_Comm comm, bool local_ok);
// Collective: rank 0 receives every rank's lines in rank order; others get {}.
std::vector<std::string> gather_lines(MPI_Comm comm, const std::vector<std::string>& lines);
// Collective: returns root's `value` on every rank.
std::string broadcast_string(MPI_Comm comm, const std::string& value, int root = 0);
// Collective: element-wise max / sum of a vector of equal length on every rank.
std::vector<long long> all_max(MPI_Comm comm, const std::vector<long long>& values);
std::vector<long long> all_sum(MPI_Comm comm, const std::vector<long long>& values);

}  // namespace eplb::runtime
