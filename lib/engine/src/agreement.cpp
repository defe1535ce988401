#include "eplb/engine/agreement.hpp"

#include "eplb/core/log.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::engine {
namespace {

core::ErrorKind kind_for_exit_code(int code) {
  using core::ErrorKind;
  for (auto kind : {ErrorKind::kUsage, ErrorKind::kInput, ErrorKind::kIo, ErrorKind::kComm,
                    ErrorKind::kVerify, ErrorKind::kInternal}) {
    if (core::exit_code_for(kind) == code) return kind;
  }
  return ErrorKind::kInternal;
}

void throw_if_anyone_failed(MPI_Comm comm, const core::ProblemList& local) {
  long long code = local.empty() ? 0 : core::exit_code_for(local.kind());
  // Usage (64) sorts above input (2); any failure at all makes the maximum non-zero.
  code = runtime::all_max(comm, {code})[0];
  if (code != 0) throw core::Error::reported_elsewhere(kind_for_exit_code(static_cast<int>(code)));
}

}  // namespace

void agree(MPI_Comm comm, const core::ProblemList& local) {
  for (const auto& problem : local.problems()) core::log::error("{}", problem);
  throw_if_anyone_failed(comm, local);
}

void agree_identical(MPI_Comm comm, const core::ProblemList& local) {
  if (core::log::is_leader()) {
    for (const auto& problem : local.problems()) core::log::error("{}", problem);
  }
  throw_if_anyone_failed(comm, local);
}

bool capture(core::ProblemList& out, const std::function<void()>& step) {
  try {
    step();
    return true;
  } catch (const core::Error& e) {
    out.set_kind_if_worse(e.kind());
    for (const auto& p : e.problems()) out.add(p);
  } catch (const std::exception& e) {
    out.set_kind_if_worse(core::ErrorKind::kInternal);
    out.add(std::string("internal error: ") + e.what());
  }
  return false;
}

}  // namespace eplb::engine
