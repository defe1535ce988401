#include "eplb/core/report.hpp"

#include <fstream>

#include "eplb/core/log.hpp"

namespace eplb::core {

long long peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

void Report::set_outcome(int exit_code, const Error* error) {
  root_["exit_code"] = exit_code;
  root_["result"] = exit_code == kExitOk ? "ok" : "error";
  if (error != nullptr) {
    // Problems printed before an agreement are only in the log: list this process's.
    root_["error"] = {{"kind", to_string(error->kind())},
                      {"problems", error->reported() ? log::printed_errors() : error->problems()},
                      {"reported_elsewhere", error->reported()}};
  }
}

std::string Report::text() const {
  return root_.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace eplb::core
