// Typed errors thrown inside lib/ and caught once in main.
//
// Every error carries a kind (which maps to a documented exit code, see docs/CLI.md) and
// one or more problems, each a complete sentence naming the object it is about
// (file, layer, slot, logical expert id). The rank prefix is added by the logger.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace eplb::core {

enum class ErrorKind {
  kUsage,        // bad command line, output exists without --force
  kInput,        // placement or checkpoint content is invalid or inconsistent
  kIo,           // a file could not be read or written
  kComm,         // MPI/NCCL/CUDA failure or timeout during the run
  kVerify,       // `verify` found slots that do not hold what they should
  kInterrupted,  // SIGINT or SIGTERM arrived (the process exits with 128 + the signal)
  kInternal,     // a bug
};

// Documented process exit codes (docs/CLI.md). Keep in sync.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1;
inline constexpr int kExitInput = 2;
inline constexpr int kExitIo = 3;
inline constexpr int kExitComm = 4;
inline constexpr int kExitVerify = 5;
inline constexpr int kExitUsage = 64;
// SIGINT: 130, SIGTERM: 143 (128 + the signal number, the shell's convention).
inline constexpr int kExitInterruptedBase = 128;

int exit_code_for(ErrorKind kind);
const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string problem);
  Error(ErrorKind kind, std::vector<std::string> problems);

  // An error whose problems another rank has already printed (after a collective check
  // gathered them there): carries only the kind, so every rank exits with the same code.
  static Error reported_elsewhere(ErrorKind kind);

  ErrorKind kind() const { return kind_; }
  bool reported() const { return reported_; }
  // One entry per problem; never empty.
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  ErrorKind kind_;
  std::vector<std::string> problems_;
  bool reported_ = false;
};

// How every message names a file or directory: in single quotes, "'ckpt/rank-00003.h5'".
std::string quoted(const std::filesystem::path& path);

// The same error (kind, whether reported elsewhere) with `prefix` put before every problem
// ("'f.h5' layer 3: ", "layer 4: ").
Error with_prefix(const Error& error, std::string_view prefix);

// Collects problems, then throws them all at once: validation reports *every* problem.
class ProblemList {
 public:
  explicit ProblemList(ErrorKind kind = ErrorKind::kInput) : kind_(kind) {}
  void add(std::string problem) { problems_.push_back(std::move(problem)); }
  bool empty() const { return problems_.empty(); }
  ErrorKind kind() const { return kind_; }
  // Keeps the kind with the higher exit code (a list may mix, e.g., input and I/O problems).
  void set_kind_if_worse(ErrorKind kind);
  size_t size() const { return problems_.size(); }
  const std::vector<std::string>& problems() const { return problems_; }
  void append(const ProblemList& other);
  // Throws Error(kind, problems) if any problem was added.
  void throw_if_any() const;

 private:
  ErrorKind kind_;
  std::vector<std::string> problems_;
};

}  // namespace eplb::core

// Throws an internal error naming the failed condition, file and line.
#define EPLB_ASSERT(cond)                                                                 \
  do {                                                                                    \
    if (!(cond))                                                                          \
      throw ::eplb::core::Error(::eplb::core::ErrorKind::kInternal,                       \
                                std::string("internal error: ") + #cond + " failed at " + \
                                    __FILE__ + ":" + std::to_string(__LINE__));           \
  } while (0)
