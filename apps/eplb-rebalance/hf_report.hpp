// The --json keys and --roofline of `import` and `export` (cmd_hf_report.cpp).
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "eplb/runtime/mpi.hpp"
#include "eplb/tools/hf_io.hpp"

namespace eplb::app {

// files, num_moe_layers, num_logical_experts, bytes (read, written), seconds.total.
void add_hf_report(const tools::HfReport& report);
// --roofline: `read_files` read up to the job's bytes_read while the output's size is
// written next to `output`; logged and added to the report as `roofline`.
void add_job_roofline(const runtime::MpiSession& session,
                      const std::vector<std::filesystem::path>& read_files,
                      const tools::HfReport& report, const std::filesystem::path& output,
                      std::string_view job);

}  // namespace eplb::app
