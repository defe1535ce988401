#include "eplb/job/agreement.hpp"

#include <fmt/format.h>

#include <string>
#include <vector>

#include "eplb/core/log.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::job {
namespace {

core::ErrorKind kind_for_exit_code(int code) {
  using core::ErrorKind;
  for (auto kind : {ErrorKind::kUsage, ErrorKind::kInput, ErrorKind::kIo, ErrorKind::kComm,
                    ErrorKind::kVerify, ErrorKind::kInternal}) {
    if (core::exit_code_for(kind) == code) return kind;
  }
  return ErrorKind::kInternal;
}

void throw_if_anyone_failed(const runtime::Group& group, const core::ProblemList& local,
                            std::string_view phase) {
  long long code = local.empty() ? 0 : core::exit_code_for(local.kind());
  // Usage (64) sorts above input (2); any failure at all makes the maximum non-zero.
  code = runtime::all_max(group, {code}, phase)[0];
  if (code != 0) throw core::Error::reported_elsewhere(kind_for_exit_code(static_cast<int>(code)));
}

}  // namespace

void agree(const runtime::Group& group, const core::ProblemList& local, std::string_view phase) {
  for (const auto& problem : local.problems()) core::log::error("{}", problem);
  throw_if_anyone_failed(group, local, phase);
}

void agree_identical(const runtime::Group& group, const core::ProblemList& local,
                     std::string_view phase) {
  if (core::log::is_leader()) {
    for (const auto& problem : local.problems()) core::log::error("{}", problem);
  }
  throw_if_anyone_failed(group, local, phase);
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

void at_layer(int32_t layer_idx, const std::function<void()>& step) {
  try {
    step();
  } catch (const core::Error& e) {
    if (e.reported()) throw;
    throw core::with_prefix(e, fmt::format("layer {}: ", layer_idx));
  }
}

}  // namespace eplb::job
