// Report: nlohmann's serializer, valid JSON whatever bytes a path holds, atomic write.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eplb/core/report.hpp"
#include "test_files.hpp"

namespace core = eplb::core;
namespace fs = std::filesystem;

TEST_CASE("report: outcome of a success and of an error") {
  core::Report ok;
  ok["command"] = "run";
  ok.set_outcome(core::kExitOk);
  auto parsed = nlohmann::json::parse(ok.text());
  CHECK(parsed["result"] == "ok");
  CHECK(parsed["exit_code"] == 0);
  CHECK_FALSE(parsed.contains("error"));

  core::Report bad;
  core::Error error(core::ErrorKind::kInput, std::vector<std::string>{"first", "second"});
  bad.set_outcome(core::exit_code_for(error.kind()), &error);
  parsed = nlohmann::json::parse(bad.text());
  CHECK(parsed["result"] == "error");
  CHECK(parsed["exit_code"] == 2);
  CHECK(parsed["error"]["kind"] == core::to_string(core::ErrorKind::kInput));
  CHECK(parsed["error"]["problems"] == nlohmann::json({"first", "second"}));
}

TEST_CASE("report: a path that is not UTF-8 still gives valid JSON") {
  core::Report r;
  const std::string path = std::string("/data/ck\xff\xfept/a\"b\\c\n");
  r["inputs"]["input"] = path;
  const std::string text = r.text();
  // Strict parse (nlohmann throws on invalid UTF-8): the two bad bytes became U+FFFD.
  auto parsed = nlohmann::json::parse(text);
  CHECK(parsed["inputs"]["input"] == "/data/ck\xef\xbf\xbd\xef\xbf\xbdpt/a\"b\\c\n");
  CHECK(text.find('\xff') == std::string::npos);
}

TEST_CASE("report: written in one piece, replacing an older one") {
  const eplb::test::TempDir tmp;
  const fs::path& dir = tmp.path();
  const fs::path path = dir / "report.json";
  std::ofstream(path) << "old";
  core::Report r;
  r.set_path(path);
  r["command"] = "verify";
  r.write();
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(nlohmann::json::parse(text.str())["command"] == "verify");
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}) == 1);  // no temp

  core::Report nowhere;
  nowhere.set_path(dir / "missing-dir" / "r.json");
  CHECK_THROWS_AS(nowhere.write(), core::Error);
}
