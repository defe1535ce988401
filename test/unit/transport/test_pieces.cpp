// detail::piece_sizes: how the NCCL pipeline cuts one stream into rounds. Both ends of a
// pair compute it independently, so it must be exact and deterministic.
#include <catch2/catch.hpp>

#include <numeric>
#include <random>

#include "detail.hpp"

using eplb::transport::detail::piece_sizes;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

void check_invariants(size_t total, size_t cap, size_t align, size_t min_ramp = 0) {
  const auto pieces = piece_sizes(total, cap, align, min_ramp);
  INFO("total " << total << " cap " << cap << " align " << align);
  REQUIRE(std::accumulate(pieces.begin(), pieces.end(), size_t{0}) == total);
  for (size_t i = 0; i < pieces.size(); ++i) {
    INFO("piece " << i << " of " << pieces.size() << ": " << pieces[i]);
    CHECK(pieces[i] > 0);
    CHECK(pieces[i] <= cap);
    if (i + 1 < pieces.size()) CHECK(pieces[i] % align == 0);
  }
  // No more rounds than needed plus the ramp's six extra pieces.
  CHECK(pieces.size() <= (total + cap - 1) / cap + 6);
}

}  // namespace

TEST_CASE("piece_sizes: empty and short streams are one piece") {
  CHECK(piece_sizes(0, 512 * kMiB, 256).empty());
  CHECK(piece_sizes(100, 512 * kMiB, 256) == std::vector<size_t>{100});
  CHECK(piece_sizes(512 * kMiB, 512 * kMiB, 256, 512 * kMiB) == std::vector<size_t>{512 * kMiB});
}

TEST_CASE("piece_sizes: a long stream ramps up from cap/8 and back down") {
  const size_t cap = 512 * kMiB;
  const auto pieces = piece_sizes(10 * cap + 100, cap, 256);
  REQUIRE(pieces.size() >= 8);
  CHECK(pieces[0] == cap / 8);
  CHECK(pieces[1] == cap / 4);
  CHECK(pieces[2] == cap / 2);
  CHECK(pieces[pieces.size() - 3] == cap / 2);
  CHECK(pieces[pieces.size() - 2] == cap / 4);
  CHECK(pieces.back() == cap / 8 + 100);  // the unaligned tail joins the last piece
  for (size_t i = 3; i + 3 < pieces.size(); ++i) {
    CHECK(pieces[i] <= cap);
    CHECK(pieces[i] >= cap / 2);  // the middle is cut evenly: no sliver of a round
  }
  check_invariants(10 * cap + 100, cap, 256);
}

TEST_CASE("piece_sizes: ramp pieces under min_ramp are left out") {
  const size_t cap = 512 * kMiB;
  const auto pieces = piece_sizes(10 * cap, cap, 256, 100 * kMiB);
  REQUIRE(pieces.size() >= 4);
  CHECK(pieces[0] == cap / 4);
  CHECK(pieces[1] == cap / 2);
  CHECK(pieces[pieces.size() - 2] == cap / 2);
  CHECK(pieces.back() == cap / 4);
  CHECK(piece_sizes(10 * cap, cap, 256, cap)[0] == cap);  // no ramp at all
}

TEST_CASE("piece_sizes: a shorter stream ramps less high") {
  const size_t cap = 512 * kMiB;
  // 1.1 GiB: the whole ramp (2 x 448 MiB) fits, the middle is one short piece.
  CHECK(piece_sizes(1100 * kMiB, cap, 256) == std::vector<size_t>{64 * kMiB, 128 * kMiB, 256 * kMiB,
                                                                  204 * kMiB, 256 * kMiB,
                                                                  128 * kMiB, 64 * kMiB});
  // 600 MiB: 2 x (64 + 128) fits, 2 x 448 does not.
  CHECK(piece_sizes(600 * kMiB, cap, 256) ==
        std::vector<size_t>{64 * kMiB, 128 * kMiB, 216 * kMiB, 128 * kMiB, 64 * kMiB});
  // One cap's worth ramps too: the first gather is 64 MiB, not 512.
  CHECK(piece_sizes(512 * kMiB, cap, 256) ==
        std::vector<size_t>{64 * kMiB, 128 * kMiB, 128 * kMiB, 128 * kMiB, 64 * kMiB});
  // Under twice the smallest step: no ramp, one piece.
  CHECK(piece_sizes(100 * kMiB, cap, 256) == std::vector<size_t>{100 * kMiB});
}

TEST_CASE("piece_sizes: without a ramp, equal pieces") {
  const size_t cap = 512 * kMiB;
  const auto pieces = piece_sizes(cap + cap / 2, cap, 256, cap);
  CHECK(pieces == std::vector<size_t>{3 * cap / 4, 3 * cap / 4});
}

TEST_CASE("piece_sizes: invariants over random totals, caps and alignments") {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const size_t align = size_t{1} << (rng() % 9);                   // 1 .. 256
    const size_t cap = align * (1 + rng() % (i % 2 ? 64 : 100000));  // small and large caps
    const size_t total = rng() % (cap * (1 + rng() % 40) + 3);
    check_invariants(total, cap, align, i % 3 == 0 ? cap / 4 : 0);
  }
}
