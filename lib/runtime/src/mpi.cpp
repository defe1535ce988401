// placeholder: implemented in a following commit
#include "eplb/runtime/mpi.hpp"
namespace eplb::runtime {
MpiSession::MpiSession(int* argc, char*** argv) { MPI_Init(argc, argv); finalize_ = true; MPI_Comm_rank(MPI_COMM_WORLD, &rank_); MPI_Comm_size(MPI_COMM_WORLD, &size_); }
MpiSession::~MpiSession() { if (finalize_) MPI_Finalize(); }
void MpiSession::abort_job(int code) const { MPI_Abort(MPI_COMM_WORLD, code); __builtin_unreachable(); }
}
