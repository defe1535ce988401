// The --json keys and --roofline of `import` and `export` (docs/CLI.md, "Reports").
#include "commands.hpp"
#include "eplb/bench/storage_roofline.hpp"
#include "eplb/tools/hf_io.hpp"
#include "hf_report.hpp"

namespace eplb::app {

void add_hf_report(const tools::HfReport& r) {
  auto& j = job_report().root();
  j["files"] = r.num_files;
  j["num_moe_layers"] = r.num_moe_layers;
  j["num_logical_experts"] = r.num_logical_experts;
  j["bytes"] = {{"read", r.bytes_read}, {"written", r.bytes_written}};
  j["seconds"] = {{"total", r.seconds}};
  if (r.phases) {
    j["seconds"]["setup"] = r.phases->setup;
    j["seconds"]["write"] = r.phases->write;
    j["seconds"]["commit"] = r.phases->commit;
  }
}

void add_job_roofline(const runtime::MpiSession& session,
                      const std::vector<std::filesystem::path>& read_files,
                      const tools::HfReport& report, const std::filesystem::path& output,
                      std::string_view job) {
  bench::RooflineOptions ro;
  ro.read_files = read_files;
  ro.read_bytes = static_cast<uint64_t>(report.bytes_read);
  ro.write_bytes = bench::total_size(bench::files_under(output));
  ro.write_dir = std::filesystem::absolute(output).parent_path();
  const auto r = bench::measure_storage_roofline(session.group(), ro);
  bench::log_roofline(r, job, report.seconds);
  job_report()["roofline"] = bench::roofline_json(r, report.seconds);
}

}  // namespace eplb::app
