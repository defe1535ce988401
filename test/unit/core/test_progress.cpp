// Progress: throttling and formatting, with an injected clock and output sink.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "eplb/core/progress.hpp"

namespace core = eplb::core;
using namespace std::chrono_literals;

namespace {

struct Fake {
  core::Clock::time_point now{};
  std::vector<std::string> out;
  core::Progress make(core::Progress::Style style, int64_t total) {
    core::Progress::Settings s;
    s.style = style;
    return core::Progress(
        "rebalance", total, "layer", s, [this](std::string_view t) { out.emplace_back(t); },
        [this] { return now; });
  }
};

}  // namespace

TEST_CASE("format_line: bytes, rate and ETA from the units done") {
  // 16 of 64 layers, 1 GiB in 4 s: 256 MiB/s, 48 layers left at 0.25 s each = 12 s.
  CHECK(core::Progress::format_line("rebalance", "layer", 16, 64, int64_t{1} << 30, 4.0) ==
        "rebalance: layer 16/64 (25%), 1.00 GiB, 256 MiB/s, ETA 0:12");
  CHECK(core::Progress::format_line("verify", "layer", 64, 64, 3 << 20, 3725.0) ==
        "verify: layer 64/64 (100%), 3.00 MiB, 844 B/s, done in 1:02:05");
  CHECK(core::Progress::format_line("generate", "layer", 0, 8, 0, 0.0) ==
        "generate: layer 0/8 (0%), 0 B");
}

TEST_CASE("plain lines: at most one per interval, and the final state once") {
  Fake f;
  {
    auto p = f.make(core::Progress::Style::kLines, 10);
    for (int i = 0; i < 10; ++i) {
      f.now += 2s;  // 2 s per layer, 5 s apart at least: layers 3 (6 s), 6 (12 s), 9 (18 s)
      p.advance(1, 1024);
    }
    p.finish();
    p.finish();  // idempotent
  }
  REQUIRE(f.out.size() == 4);
  CHECK(f.out[0] == "rebalance: layer 3/10 (30%), 3.00 KiB, 512 B/s, ETA 0:14\n");
  CHECK(f.out[1].starts_with("rebalance: layer 6/10 (60%)"));
  CHECK(f.out[2].starts_with("rebalance: layer 9/10 (90%)"));
  CHECK(f.out[3] == "rebalance: layer 10/10 (100%), 10.0 KiB, 512 B/s, done in 0:20\n");
  for (const auto& line : f.out) CHECK(line.find('\r') == std::string::npos);
}

TEST_CASE("plain lines: a job shorter than the interval prints nothing") {
  Fake f;
  {
    auto p = f.make(core::Progress::Style::kLines, 4);
    for (int i = 0; i < 4; ++i) {
      f.now += 1s;
      p.advance(1, 100);
    }
  }  // the destructor finishes
  CHECK(f.out.empty());
}

TEST_CASE("redraw: one line rewritten in place, throttled, ended by a newline") {
  Fake f;
  auto p = f.make(core::Progress::Style::kRedraw, 3);
  f.now += 50ms;
  p.advance(1, 10);  // under 100 ms since the start: not drawn
  CHECK(f.out.empty());
  f.now += 60ms;
  p.advance(1, 10);
  REQUIRE(f.out.size() == 1);
  CHECK(f.out[0].starts_with("\rrebalance: layer 2/3 (66%), 20 B"));
  CHECK(f.out[0].ends_with("\x1b[K"));
  f.now += 1ms;
  p.advance(1, 10);  // the last layer is drawn at once
  REQUIRE(f.out.size() == 2);
  CHECK(f.out[1].starts_with("\rrebalance: layer 3/3 (100%), 30 B"));
  p.finish();
  REQUIRE(f.out.size() == 3);
  CHECK(f.out[2] == "\n");
}

TEST_CASE("off: nothing at all") {
  Fake f;
  auto p = f.make(core::Progress::Style::kOff, 2);
  f.now += 60s;
  p.advance(2, 100);
  p.finish();
  CHECK(f.out.empty());
}
