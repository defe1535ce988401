// The machine-readable report of one command (`--json FILE`, docs/CLI.md "Reports"),
// serialized by nlohmann::json, never by hand.
//
// Local: a Report is filled by the process that owns it; only the leader (rank 0) writes
// it (job::write_report: stdout, or a file published atomically through lib/fs). Commands
// fill their sections as they go; main records the outcome and writes it once, on success
// and on failure alike, so a failed run leaves a report too.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "eplb/core/error.hpp"

namespace eplb::core {

class Report {
 public:
  // Where the report goes: a file, "-" for stdout, empty for nowhere.
  void set_path(std::filesystem::path path) { path_ = std::move(path); }
  const std::filesystem::path& path() const { return path_; }
  bool enabled() const { return !path_.empty(); }

  // The top-level object; commands add their sections ("plan", "phases", "bytes", ...).
  nlohmann::json& root() { return root_; }
  nlohmann::json& operator[](const std::string& key) { return root_[key]; }

  // Records "result" ("ok" or "error"), "exit_code", and for an error
  // "error": {"kind": "input", "problems": [...], "reported_elsewhere": bool}; problems are
  // the error's own, or, for an error already reported (after an agreement), the error
  // messages this process printed (possibly none: another rank found the problem).
  void set_outcome(int exit_code, const Error* error = nullptr);

  // The JSON text, indented by 2. Paths on Linux are bytes and need not be UTF-8: every
  // byte that is not part of valid UTF-8 becomes U+FFFD, so the text is always valid JSON
  // (and valid UTF-8).
  std::string text() const;

 private:
  std::filesystem::path path_;
  nlohmann::json root_ = nlohmann::json::object();
};

// Local: this process's peak resident memory (VmHWM), 0 where /proc is not available.
long long peak_rss_bytes();

}  // namespace eplb::core
