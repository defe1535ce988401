// Report: nlohmann's serializer, valid JSON whatever bytes a path holds (its atomic write:
// test/unit/job/test_report_file.cpp).
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
