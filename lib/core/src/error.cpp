#include "eplb/core/error.hpp"

namespace eplb::core {

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

Error with_prefix(const Error& error, std::string_view prefix) {
  if (error.reported()) return error;
  std::vector<std::string> problems;
  for (const std::string& problem : error.problems())
    problems.push_back(std::string(prefix) + problem);
  return Error(error.kind(), std::move(problems));
}

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
      return kExitUsage;
    case ErrorKind::kInput:
      return kExitInput;
    case ErrorKind::kIo:
      return kExitIo;
    case ErrorKind::kComm:
      return kExitComm;
    case ErrorKind::kVerify:
      return kExitVerify;
    case ErrorKind::kInterrupted:
      return kExitInterruptedBase + 2;  // as SIGINT; the signal thread exits with its own
    case ErrorKind::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
      return "usage";
    case ErrorKind::kInput:
      return "input";
    case ErrorKind::kIo:
      return "io";
    case ErrorKind::kComm:
      return "communication";
    case ErrorKind::kVerify:
      return "verify";
    case ErrorKind::kInterrupted:
      return "interrupted";
    case ErrorKind::kInternal:
      return "internal";
  }
  return "internal";
}

namespace {
std::string join(const std::vector<std::string>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += '\n';
    out += p;
  }
  return out;
}
}  // namespace

Error::Error(ErrorKind kind, std::string problem)
    : std::runtime_error(problem), kind_(kind), problems_{std::move(problem)} {}

Error::Error(ErrorKind kind, std::vector<std::string> problems)
    : std::runtime_error(join(problems)), kind_(kind), problems_(std::move(problems)) {
  if (problems_.empty()) problems_.push_back("unknown error");
}

Error Error::reported_elsewhere(ErrorKind kind) {
  Error e(kind, "error reported by another rank");
  e.reported_ = true;
  return e;
}

void ProblemList::set_kind_if_worse(ErrorKind kind) {
  if (exit_code_for(kind) > exit_code_for(kind_) || problems_.empty()) kind_ = kind;
}

void ProblemList::append(const ProblemList& other) {
  if (!other.empty()) set_kind_if_worse(other.kind_);
  problems_.insert(problems_.end(), other.problems_.begin(), other.problems_.end());
}

void ProblemList::throw_if_any() const {
  if (!problems_.empty()) throw Error(kind_, problems_);
}

}  // namespace eplb::core
