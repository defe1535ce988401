// The strict JSON reader: located duplicate keys at every depth, malformed text, integers.
#include <catch2/catch.hpp>

#include "eplb/core/json_reader.hpp"

namespace json = eplb::core::json;
using Problems = std::vector<std::string>;

namespace {

Problems problems_of(const std::string& text) {
  json::Reporter report("doc.json");
  try {
    json::parse_document(text, report);
  } catch (const eplb::core::Error& error) {
    return error.problems();
  }
  return report.problems().problems();
}

}  // namespace

TEST_CASE("duplicate keys are reported with their pointer at every depth", "[core][json]") {
  CHECK(problems_of(R"({"a": 1, "a": 2})") == Problems{R"('doc.json' at /a: duplicate key "a")"});
  CHECK(problems_of(R"({"t": {"dtype": "F32", "dtype": "F16"}})") ==
        Problems{R"('doc.json' at /t/dtype: duplicate key "dtype")"});
  CHECK(problems_of(R"({"m": [1, {"x": 0}, [2, {"y": 1, "y": 2}]]})") ==
        Problems{R"('doc.json' at /m/2/1/y: duplicate key "y")"});
  CHECK(problems_of(R"({"a/b": {"~": 1, "~": 1}})") ==
        Problems{R"('doc.json' at /a~1b/~0: duplicate key "~")"});
  // The same key in sibling objects is no duplicate.
  CHECK(problems_of(R"([{"k": 1}, {"k": 2}])").empty());
  CHECK(problems_of(R"({"a": {"k": 1}, "b": {"k": 2}})").empty());
}

TEST_CASE("malformed and non-UTF-8 text is thrown with its position", "[core][json]") {
  const Problems bad = problems_of(R"({"a": 1,})");
  REQUIRE(bad.size() == 1);
  CHECK(bad[0].starts_with("'doc.json': malformed JSON at line 1, column 9 (byte 9): "));
  const Problems latin1 = problems_of("{\"caf\xe9\": 1}");
  REQUIRE(latin1.size() == 1);
  CHECK(latin1[0].starts_with("'doc.json': malformed JSON"));
  CHECK(latin1[0].find("UTF-8") != std::string::npos);
}

TEST_CASE("as_int accepts integers only and saturates above int64", "[core][json]") {
  CHECK(json::as_int(nlohmann::json::parse("7")) == 7);
  CHECK(json::as_int(nlohmann::json::parse("-3")) == -3);
  CHECK_FALSE(json::as_int(nlohmann::json::parse("1.0")).has_value());
  CHECK_FALSE(json::as_int(nlohmann::json::parse("\"1\"")).has_value());
  CHECK(json::as_int(nlohmann::json::parse("18446744073709551615")) == INT64_MAX);
}
