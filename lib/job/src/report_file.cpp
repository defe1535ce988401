// A command's report, written where the user asked (eplb/job/report_file.hpp).
#include "eplb/job/report_file.hpp"

#include <cstdio>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/publish.hpp"

namespace eplb::job {

void write_report(const core::Report& report) {
  if (!report.enabled() || !core::log::is_leader()) return;
  const std::string content = report.text();
  if (report.path() == "-") {
    std::fwrite(content.data(), 1, content.size(), stdout);
    std::fflush(stdout);
    return;
  }
  try {
    fs::write_file_atomic(report.path(), content);
  } catch (const core::Error& e) {
    throw core::with_prefix(e, core::quoted(report.path()) + ": cannot write the report: ");
  }
}

}  // namespace eplb::job
