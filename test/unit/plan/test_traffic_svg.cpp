// traffic_bytes and render_traffic_svg: bytes per pair and layer, the labels a reader (and
// the Chromium e2e test) relies on, escaping, and the busiest sender.
#include <catch2/catch.hpp>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/plan/traffic_svg.hpp"
#include "plan_test_util.hpp"

using eplb::plan::test::make_placement;

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("traffic_bytes: every message's experts times the bytes per expert") {
  // Test vector "swap" (test/e2e/placements.py) in layer 0, identity in layer 1.
  const auto old_p = make_placement(2, 2, {{0, 1, 2, 3}, {0, 1, 2, 3}});
  const auto new_p = make_placement(2, 2, {{2, 1, 0, 3}, {0, 1, 2, 3}});
  const auto traffic = eplb::plan::traffic_bytes(eplb::plan::make_plan(old_p, new_p), 100);
  REQUIRE(traffic.size() == 2);
  CHECK(traffic[0] == std::vector<std::vector<int64_t>>{{0, 100}, {100, 0}});
  CHECK(traffic[1] == std::vector<std::vector<int64_t>>{{0, 0}, {0, 0}});
}

TEST_CASE("render_traffic_svg: labels, tooltips, node boundaries, busiest sender") {
  eplb::plan::TrafficPicture picture;
  picture.title = "'a<b>.json' -> 'c&\xff.json'";  // escaped, and the bad byte replaced
  picture.subtitle = "1 MiB per expert";
  picture.node_of_rank = {0, 0, 1, 1};
  // Layer 0: rank 2 sends 3 KiB to rank 0; layer 1: rank 1 sends 1 KiB to rank 3 and rank
  // 2 sends 1 KiB to rank 1. Rank 2 sends most (4 KiB).
  picture.layers = {{{0, 0, 0, 0}, {0, 0, 0, 0}, {3072, 0, 0, 0}, {0, 0, 0, 0}},
                    {{0, 0, 0, 0}, {0, 0, 0, 1024}, {0, 1024, 0, 0}, {0, 0, 0, 0}}};
  const std::string svg = eplb::plan::render_traffic_svg(picture);
  CHECK(svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));
  CHECK(svg.ends_with("</svg>\n"));
  CHECK(svg.find("'a&lt;b&gt;.json' -&gt; 'c&amp;\xef\xbf\xbd.json'") != std::string::npos);
  CHECK(svg.find('\xff') == std::string::npos);
  for (const char* label : {">sender (EP rank)<", ">receiver (EP rank)<", ">node 0<", ">node 1<",
                            ">layer 0<", ">layer 1<", ">busiest sender: rank 2, 4.00 KiB<"}) {
    CHECK(count(svg, label) == 1);
  }
  // One tooltip per non-empty cell of the summed matrix.
  CHECK(count(svg, "<title>rank 2 -&gt; rank 0: 3.00 KiB</title>") == 1);
  CHECK(count(svg, "<title>rank ") - count(svg, " sends ") == 3);
  // Node boundary at rank 2: one vertical and one horizontal line per matrix (3 matrices).
  CHECK(count(svg, "stroke=\"#222\"") == 6);
}

TEST_CASE("render_traffic_svg: nothing moves, no node layout") {
  eplb::plan::TrafficPicture picture;
  picture.layers = {{{0, 0}, {0, 0}}};
  const std::string svg = eplb::plan::render_traffic_svg(picture);
  CHECK(svg.find(">busiest sender: none, nothing moves<") != std::string::npos);
  CHECK(svg.find(">node 0<") == std::string::npos);
  CHECK(svg.find("<title>rank ") == std::string::npos);
}

TEST_CASE("render_traffic_svg: refuses an empty or non-square input") {
  eplb::plan::TrafficPicture picture;
  CHECK_THROWS_AS(eplb::plan::render_traffic_svg(picture), eplb::core::Error);
  picture.layers = {{{0, 0}, {0}}};
  CHECK_THROWS_AS(eplb::plan::render_traffic_svg(picture), eplb::core::Error);
}

TEST_CASE("render_traffic_svg: ranks grouped by their real node (--map-by node)") {
  eplb::plan::TrafficPicture picture;
  picture.node_of_rank = {0, 1, 0, 1};  // round-robin: ranks 0, 2 on node 0; 1, 3 on node 1
  picture.node_names = {"host-a", "host<b>"};
  // Rank 3 sends 2 KiB to rank 0, rank 1 sends 1 KiB to rank 2.
  picture.layers = {{{0, 0, 0, 0}, {0, 0, 1024, 0}, {0, 0, 0, 0}, {2048, 0, 0, 0}}};
  const std::string svg = eplb::plan::render_traffic_svg(picture);
  CHECK(count(svg, ">node 0 (host-a)<") == 1);
  CHECK(count(svg, ">node 1 (host&lt;b&gt;)<") == 1);
  CHECK(count(svg, "EP ranks grouped by node") == 1);
  // Tooltips and the busiest sender name the real ranks.
  CHECK(count(svg, "<title>rank 3 -&gt; rank 0: 2.00 KiB</title>") == 1);
  CHECK(count(svg, "<title>rank 1 -&gt; rank 2: 1.00 KiB</title>") == 1);
  CHECK(count(svg, ">busiest sender: rank 3, 2.00 KiB<") == 1);
  // Axis labels in display order: 0 2 1 3 (one row label and one column label each).
  const size_t at0 = svg.find("font-size=\"10\">0</text>");
  const size_t at2 = svg.find("font-size=\"10\">2</text>");
  const size_t at1 = svg.find("font-size=\"10\">1</text>");
  CHECK(at0 < at2);
  CHECK(at2 < at1);
  // One boundary (between the groups) per matrix: the big one and one layer.
  CHECK(count(svg, "stroke=\"#222\"") == 4);
}
