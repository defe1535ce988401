// Progress of a long command, shown by the leader (rank 0): units done (layers), bytes,
// rate and ETA. On a terminal one line is redrawn in place; otherwise (CI logs, files) a
// plain line is printed at most every few seconds. `-q` turns it off; `-v` prints plain
// lines so that per-phase detail lines do not collide with a redrawn one.
//
// Local: a Progress reports what its own process has done. Commands whose ranks move in
// lockstep (`run`: every layer ends in an agreement) thereby show the whole job's progress
// on rank 0; commands whose ranks work independently (`generate`, `verify`) show rank 0's
// share of the work, which is the same size as every other rank's to within one shard.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "eplb/core/clock.hpp"

namespace eplb::core {

class Progress {
 public:
  enum class Style { kOff, kRedraw, kLines };
  struct Settings {
    Style style = Style::kOff;
    Clock::duration line_interval = std::chrono::seconds(5);           // kLines
    Clock::duration redraw_interval = std::chrono::milliseconds(100);  // kRedraw
  };
  using Sink = std::function<void(std::string_view text)>;  // writes text as is
  using Now = std::function<Clock::time_point()>;

  // `label` starts every line ("rebalance"); `unit` names what is counted ("layer").
  Progress(std::string label, int64_t total_units, std::string unit, Settings settings, Sink sink,
           Now now = &Clock::now);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  // The leader's progress on stdout, in auto_style().
  static Progress for_leader(std::string label, int64_t total_units, std::string unit);
  // kOff when quiet and on every process but the leader; else EPLB_PROGRESS
  // (redraw|lines|off) if set; else kLines at the detail log level or when stdout is not a
  // terminal (or is mpirun's pseudo-terminal); else kRedraw.
  static Style auto_style();

  // Local: `units` more done, `bytes` more processed since the last call.
  void advance(int64_t units, int64_t bytes);
  // Local: ends a redrawn line with a newline; in kLines prints the final state if a line
  // was printed before and the last one was not already final. Idempotent.
  void finish();

  // "rebalance: layer 12/64 (18%), 1.50 GiB, 850.0 MiB/s, ETA 0:04"
  static std::string format_line(std::string_view label, std::string_view unit, int64_t done,
                                 int64_t total, int64_t bytes, double seconds);

 private:
  void emit(bool final);

  std::string label_;
  std::string unit_;
  int64_t total_;
  Settings settings_;
  Sink sink_;
  Now now_;
  Clock::time_point start_;
  Clock::time_point last_emit_;
  int64_t done_ = 0;
  int64_t bytes_ = 0;
  bool emitted_ = false;
  bool last_was_final_ = false;
  bool finished_ = false;
};

}  // namespace eplb::core
