// MPI session and the few collectives the tool needs, with RAII and typed errors.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/unique_handle.hpp"
#include "eplb/runtime/deadline.hpp"

namespace eplb::runtime {

// Throws core::Error(kComm) naming the call, the MPI error string, file and line.
void check_mpi(int rc, const char* call, const char* file, int line);
#define EPLB_MPI_CHECK(call) ::eplb::runtime::check_mpi((call), #call, __FILE__, __LINE__)

// The processes a collective runs over, and how long each collective waits for them: the
// command's --timeout (zero: no limit). Every process of `comm` passes the same timeout.
struct Group {
  MPI_Comm comm = MPI_COMM_NULL;
  std::chrono::milliseconds timeout = kDefaultTimeout;
};

// Owns MPI_Init_thread/MPI_Finalize. Collective: every process constructs one at start-up.
// Also works without mpirun (a singleton of size 1). If MPI is already initialized (a test
// main), it neither initializes nor finalizes it. Errors on MPI_COMM_WORLD return
// codes (MPI_ERRORS_RETURN) so that they become exceptions instead of silent aborts.
// `timeout` is the command's --timeout, which every collective over group() obeys.
// NOTE: MPI_Init itself cannot be polled; main bounds it with a runtime::Watchdog.
// Throws core::Error(kComm) naming the fix (srun --mpi=pmix) when srun started several
// tasks without a process-management interface that MPI can use (docs/CLI.md).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv, std::chrono::milliseconds timeout);
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
  // The real rank -> host map, gathered once at start-up (one MPI_Allgather, under main's
  // start-up watchdog) and identical on every process, so plans built from it need no
  // agreement. hosts()[r]: rank r's host name (MPI_Get_processor_name). node_of_rank()[r]:
  // its node, numbered 0.. in order of each node's lowest rank; processes are on one node
  // when MPI_COMM_TYPE_SHARED puts them together, whatever their host names say.
  const std::vector<std::string>& hosts() const { return hosts_; }
  const std::vector<int>& node_of_rank() const { return node_of_rank_; }
  int num_nodes() const { return num_nodes_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // Every process of the job, with the command's timeout.
  Group group() const { return Group{MPI_COMM_WORLD, timeout_}; }

  // Ends the whole job now (MPI_Abort). Only main may call this, on a failure during the
  // exchange where peers may be blocked; it never returns.
  [[noreturn]] void abort_job(int exit_code) const;

 private:
  void gather_hosts(MPI_Comm node_comm);

  int rank_ = 0;
  int size_ = 1;
  int node_rank_ = 0;
  int node_size_ = 1;
  std::string host_;
  std::vector<std::string> hosts_;
  std::vector<int> node_of_rank_;
  int num_nodes_ = 1;
  std::chrono::milliseconds timeout_;
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

  MPI_Comm get() const { return comm_.get(); }
  explicit operator bool() const { return static_cast<bool>(comm_); }
  // Collective (MPI_Comm_free): orderly release on the success path; throws on failure.
  void close();

 private:
  struct Traits {
    static MPI_Comm null() noexcept { return MPI_COMM_NULL; }
    // Local: frees the handle, ignoring errors (destructors never throw). Operations still
    // pending on the communicator complete or stay pending; MPI frees it when they are
    // done. Nothing once MPI is finalized.
    static void close(MPI_Comm comm) noexcept;
  };
  core::UniqueHandle<MPI_Comm, Traits> comm_;
};

// The collectives the tool uses. Each is collective over group.comm: every process calls
// it, in the same order as every other collective on that communicator. Each is
// non-blocking underneath and polled against group.timeout; a peer that does not arrive
// in time makes it throw core::Error(kComm) naming `phase` (what the job was doing, e.g.
// "layer 3: agreement before the exchange") and the silent ranks: rank 0 names the ranks
// that did not reach the collective; another rank names rank 0 if rank 0 did not, else
// says that rank 0 names them.
// NOTE: next to each collective, every rank tells rank 0 (and rank 0 every rank) that it
// arrived, by point-to-point messages with tag kRollCallTag on group.comm: that tag is
// reserved on any communicator these collectives run over.
inline constexpr int kRollCallTag = 32767;  // the largest tag MPI guarantees

// True on every rank iff `local_ok` is true on every rank.
bool all_true(const Group& group, bool local_ok, std::string_view phase);
// Rank 0 receives every rank's lines in rank order; others get {}.
std::vector<std::string> gather_lines(const Group& group, const std::vector<std::string>& lines,
                                      std::string_view phase);
// Returns root's `value` on every rank.
std::string broadcast_string(const Group& group, const std::string& value, std::string_view phase,
                             int root = 0);
// Root's `bytes` overwrite every other rank's (same size everywhere).
void broadcast_bytes(const Group& group, std::span<std::byte> bytes, std::string_view phase,
                     int root = 0);
// Element-wise max / sum of a vector of equal length on every rank.
std::vector<long long> all_max(const Group& group, const std::vector<long long>& values,
                               std::string_view phase);
std::vector<long long> all_sum(const Group& group, const std::vector<long long>& values,
                               std::string_view phase);
// Returns once every rank has called it.
void barrier(const Group& group, std::string_view phase);

}  // namespace eplb::runtime
