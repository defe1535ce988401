#include "eplb/core/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "eplb/core/log.hpp"
#include "eplb/core/units.hpp"

namespace eplb::core {

namespace {

std::string clock_time(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

Progress::Progress(std::string label, int64_t total_units, std::string unit, Settings settings,
                   Sink sink, Now now)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total_units),
      settings_(settings),
      sink_(std::move(sink)),
      now_(std::move(now)),
      start_(now_()),
      last_emit_(start_) {}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {  // a destructor never throws; a lost progress line is harmless
  }
}

// Open MPI's mpirun hands its processes a pseudo-terminal whatever its own output is (a
// CI log file included), so a terminal under mpirun is not trusted: plain lines there.
// EPLB_PROGRESS=redraw|lines|off overrides the choice.
Progress::Style Progress::auto_style() {
  if (!log::is_leader() || log::level() == log::Level::kQuiet) return Style::kOff;
  if (const char* forced = std::getenv("EPLB_PROGRESS"); forced != nullptr) {
    const std::string_view want(forced);
    if (want == "off") return Style::kOff;
    if (want == "lines") return Style::kLines;
    if (want == "redraw") return Style::kRedraw;
  }
  if (log::level() == log::Level::kDetail) return Style::kLines;
  const bool terminal =
      ::isatty(STDOUT_FILENO) != 0 && std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr;
  return terminal ? Style::kRedraw : Style::kLines;
}

Progress Progress::for_leader(std::string label, int64_t total_units, std::string unit) {
  Settings settings;
  settings.style = auto_style();
  return Progress(std::move(label), total_units, std::move(unit), settings,
                  [](std::string_view text) {
                    std::FILE* out = log::info_stream();  // stderr with --json -
                    std::fwrite(text.data(), 1, text.size(), out);
                    std::fflush(out);
                  });
}

std::string Progress::format_line(std::string_view label, std::string_view unit, int64_t done,
                                  int64_t total, int64_t bytes, double seconds) {
  const int64_t percent = total > 0 ? done * 100 / total : 100;
  std::string line = fmt::format("{}: {} {}/{} ({}%), {}", label, unit, done, total, percent,
                                 format_bytes(static_cast<double>(bytes)));
  if (seconds > 0) line += ", " + format_bytes(static_cast<double>(bytes) / seconds) + "/s";
  if (done >= total) {
    line += fmt::format(", done in {}", clock_time(seconds));
  } else if (done > 0) {
    const double eta = seconds / static_cast<double>(done) * static_cast<double>(total - done);
    line += ", ETA " + clock_time(eta);
  }
  return line;
}

void Progress::advance(int64_t units, int64_t bytes) {
  done_ += units;
  bytes_ += bytes;
  if (settings_.style == Style::kOff) return;
  const auto now = now_();
  const auto interval =
      settings_.style == Style::kRedraw ? settings_.redraw_interval : settings_.line_interval;
  // A redrawn line also shows the last unit at once; plain lines stay throttled.
  const bool due = now - last_emit_ >= interval;
  if (due || (settings_.style == Style::kRedraw && done_ >= total_)) emit(done_ >= total_);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (settings_.style == Style::kOff || !emitted_) return;
  if (!last_was_final_) emit(true);
  if (settings_.style == Style::kRedraw) sink_("\n");
}

void Progress::emit(bool final) {
  const auto now = now_();
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const std::string line = format_line(label_, unit_, done_, total_, bytes_, seconds);
  if (settings_.style == Style::kRedraw) {
    sink_("\r" + line + "\x1b[K");  // back to column 0, then clear what a longer line left
  } else {
    sink_(line + "\n");
  }
  last_emit_ = now;
  emitted_ = true;
  last_was_final_ = final;
}

}  // namespace eplb::core
