// job::write_report: the report written in one piece (fs::write_file_atomic).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eplb/core/report.hpp"
#include "eplb/job/report_file.hpp"
#include "test_files.hpp"

namespace core = eplb::core;
namespace fs = std::filesystem;

TEST_CASE("report: written in one piece, replacing an older one") {
  const eplb::test::TempDir tmp;
  const fs::path& dir = tmp.path();
  const fs::path path = dir / "report.json";
  std::ofstream(path) << "old";
  core::Report r;
  r.set_path(path);
  r["command"] = "verify";
  eplb::job::write_report(r);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(nlohmann::json::parse(text.str())["command"] == "verify");
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}) == 1);  // no temp

  core::Report nowhere;
  nowhere.set_path(dir / "missing-dir" / "r.json");
  CHECK_THROWS_AS(eplb::job::write_report(nowhere), core::Error);
}
