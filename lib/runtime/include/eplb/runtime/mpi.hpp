// MPI session and the few collectives the tool needs, with RAII and typed errors.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace eplb::runtime {

// Throws core::Error(kComm) naming the call, the MPI error string, file and line.
void check_mpi(int rc, const char* call, const char* file, int line);
#define EPLB_MPI_CHECK(call) ::eplb::runtime::check_mpi((call), #call, __FILE__, __LINE__)

// Owns MPI_Init_thread/MPI_Finalize. Collective: every process constructs one at start-up.
// Also works without mpirun (a singleton of size 1). Errors on MPI_COMM_WORLD return
// codes (MPI_ERRORS_RETURN) so that they become exceptions instead of silent aborts.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

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
