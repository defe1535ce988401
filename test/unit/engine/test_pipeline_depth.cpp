// engine::choose_depth: how many layers the pipeline holds within the staging budget.
#include <catch2/catch.hpp>

#include <cstddef>

#include "layer_step.hpp"

namespace {

using eplb::engine::choose_depth;
using eplb::engine::PipelineDepth;

constexpr size_t kMiB = size_t{1} << 20;

}  // namespace

TEST_CASE("the deepest pipeline that fits the budget") {
  // 10 MiB of old rows and 10 MiB of new rows per layer, 1 MiB of trailers.
  const auto depth = [](size_t budget, int32_t layers = 61) {
    return choose_depth(10 * kMiB, 10 * kMiB, kMiB, budget, layers);
  };
  CHECK(depth(21 * kMiB) == PipelineDepth{1, 1, 21 * kMiB, true});
  CHECK(depth(30 * kMiB) == PipelineDepth{1, 1, 21 * kMiB, true});
  CHECK(depth(31 * kMiB) == PipelineDepth{2, 1, 31 * kMiB, true});
  CHECK(depth(41 * kMiB) == PipelineDepth{2, 2, 41 * kMiB, true});
  CHECK(depth(51 * kMiB) == PipelineDepth{3, 2, 51 * kMiB, true});
  CHECK(depth(61 * kMiB) == PipelineDepth{3, 3, 61 * kMiB, true});
  CHECK(depth(size_t{1} << 40) == PipelineDepth{3, 3, 61 * kMiB, true});  // 3 is enough
  for (size_t budget = 21 * kMiB; budget < 100 * kMiB; budget += kMiB / 3) {
    CHECK(depth(budget).bytes <= budget);
  }
}

TEST_CASE("a budget below one old and one new layer runs without read-ahead, and says so") {
  const PipelineDepth d = choose_depth(10 * kMiB, 10 * kMiB, kMiB, 20 * kMiB, 61);
  CHECK(d == PipelineDepth{1, 1, 21 * kMiB, false});
}

TEST_CASE("never more buffers than layers") {
  CHECK(choose_depth(kMiB, kMiB, 0, size_t{1} << 30, 1) == PipelineDepth{1, 1, 2 * kMiB, true});
  CHECK(choose_depth(kMiB, kMiB, 0, size_t{1} << 30, 2) == PipelineDepth{2, 2, 4 * kMiB, true});
  CHECK(choose_depth(kMiB, kMiB, 0, size_t{1} << 30, 0) == PipelineDepth{1, 1, 2 * kMiB, true});
}

TEST_CASE("ranks that only send or only receive") {
  // Beyond the new ep_size a process holds no new rows; beyond the old one no old rows.
  CHECK(choose_depth(10 * kMiB, 0, 0, 30 * kMiB, 8) == PipelineDepth{3, 3, 30 * kMiB, true});
  CHECK(choose_depth(0, 10 * kMiB, 0, 25 * kMiB, 8) == PipelineDepth{3, 2, 20 * kMiB, true});
}
