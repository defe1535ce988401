// Writing a command's report (`--json FILE`, docs/CLI.md "Reports") where the user asked.
#pragma once

#include "eplb/core/report.hpp"

namespace eplb::job {

// Local; does nothing unless report.enabled() and this process is the leader. "-": the
// text on stdout; otherwise published atomically (fs::write_file_atomic: a temporary
// file created with O_EXCL | O_NOFOLLOW next to it, fsynced, renamed into place), so a
// reader never sees half a report and nothing planted at the name is followed. Throws
// core::Error(kIo) naming the path if it cannot.
void write_report(const core::Report& report);

}  // namespace eplb::job
