// Load files: every form, folding per-slot loads, and each error with its location.
#include <catch2/catch.hpp>

#include "eplb/balance/load.hpp"
#include "eplb/core/error.hpp"

namespace eplb::balance {
namespace {

ParsedLoads parse(const std::string& text, const placement::Placement* old_p = nullptr,
                  LoadForm form = LoadForm::kAuto) {
  LoadOptions o;
  o.source_name = "load.json";
  o.old_placement = old_p;
  o.form = form;
  return parse_loads(text, o);
}

std::string error_of(const std::string& text, const placement::Placement* old_p = nullptr) {
  try {
    parse(text, old_p);
  } catch (const core::Error& e) {
    std::string all;
    for (const auto& p : e.problems()) all += p + "\n";
    return all;
  }
  return "no error";
}

}  // namespace

TEST_CASE("load forms", "[balance][load]") {
  SECTION("[layers][experts]") {
    const auto p = parse("[[1, 2.5, 0], [0, 0, 0]]");
    CHECK(p.loads.num_logical_experts == 3);
    CHECK(p.loads.per_layer == std::vector<std::vector<double>>{{1, 2.5, 0}, {0, 0, 0}});
    CHECK(p.form == "per logical expert");
  }
  SECTION("[steps][layers][experts] is summed over steps") {
    const auto p = parse("[[[1, 2]], [[3, 4]], [[0, 1]]]");
    CHECK(p.loads.per_layer == std::vector<std::vector<double>>{{4, 7}});
    CHECK(p.form == "per logical expert, summed over 3 steps");
  }
  SECTION("SGLang's dump") {
    const auto p = parse(R"({"rank": 0, "logical_count": [[[1, 2]], [[3, 4]]],
                             "average_utilization_rate_over_window": null})");
    CHECK(p.loads.per_layer == std::vector<std::vector<double>>{{4, 6}});
    CHECK(p.form == "SGLang logical_count, per logical expert, summed over 2 steps");
  }
  SECTION("per physical slot, folded through OLD") {
    const placement::Placement old_p{2, 3, 4, {{0, 1, 0, 2, 3, 1}}, {}};
    const auto p = parse("[[5, 1, 5, 2, 3, 1]]", &old_p);
    CHECK(p.loads.num_logical_experts == 4);
    CHECK(p.loads.per_layer == std::vector<std::vector<double>>{{10, 2, 2, 3}});
    CHECK(p.form == "per physical slot, folded through the old placement");
    // With as many loads as experts the array is per logical expert.
    CHECK(parse("[[5, 1, 5, 2]]", &old_p).form == "per logical expert");
  }
  SECTION("ambiguous without redundant slots, unless OLD is the identity") {
    const placement::Placement perm{2, 2, 4, {{3, 2, 1, 0}}, {}};
    CHECK_THROWS_WITH(parse("[[1, 2, 3, 4]]", &perm), Catch::Contains("--load-form"));
    CHECK(parse("[[1, 2, 3, 4]]", &perm, LoadForm::kPhysical).loads.per_layer[0] ==
          std::vector<double>{4, 3, 2, 1});
    const placement::Placement identity{2, 2, 4, {{0, 1, 2, 3}}, {}};
    CHECK(parse("[[1, 2, 3, 4]]", &identity).loads.per_layer[0] == std::vector<double>{1, 2, 3, 4});
  }
}

TEST_CASE("load errors are located", "[balance][load]") {
  CHECK_THAT(error_of("[[1, -1]]"), Catch::Contains("'load.json' at /0/1: load -1 is negative"));
  CHECK_THAT(error_of("[[1, true]]"),
             Catch::Contains("'load.json' at /0/1: expected a number, got"));
  CHECK_THAT(error_of("[[1, 2], [3]]"),
             Catch::Contains("at /1: expected 2 loads (as in the first layer), got 1"));
  CHECK_THAT(error_of("[[1e39]]"), Catch::Contains("is too large"));
  CHECK_THAT(error_of("[]"), Catch::Contains("with at least one layer"));
  CHECK_THAT(error_of("{\"logical_count\": [[1]], \"x\": 1}"),
             Catch::Contains("unknown key \"x\""));
  CHECK_THAT(error_of("{\"a\": 1, \"a\": 2}"), Catch::Contains("duplicate key"));
  CHECK_THAT(error_of("{\"counts\": [[1]]}"),
             Catch::Contains("no \"logical_count\" among the keys (\"counts\")"));
  CHECK_THAT(error_of("[[[1, 2]], [[1, 2], [3, 4]]]"),
             Catch::Contains("at /1: expected 1 layers (as in step 0)"));
  const placement::Placement old_p{2, 3, 4, {{0, 1, -1, 2, 3, 1}}, {}};
  CHECK_THAT(error_of("[[5, 1, 5, 2, 3, 1]]", &old_p),
             Catch::Contains("load 5 on slot 2, which the old placement leaves empty"));
  CHECK_THAT(error_of("[[1, 2, 3]]", &old_p),
             Catch::Contains("3 loads per layer, but the old placement has 4 logical experts"));
}

}  // namespace eplb::balance
