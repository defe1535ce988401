// core::row_hash, the in-server library's row checksum: order-free over words (so a GPU can
// sum it in any order), sensitive to every byte, its position and the length.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "eplb/core/row_hash.hpp"

namespace {

uint64_t hash_of(const std::vector<std::byte>& v) {
  return eplb::core::row_hash(v.data(), v.size());
}

std::vector<std::byte> pattern(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i * 37 + 11);
  return v;
}

}  // namespace

TEST_CASE("row_hash: the sum of per-word terms, folded with the length") {
  const auto v = pattern(21);  // two words and a 5-byte tail
  uint64_t sum = 0;
  for (size_t w = 0; w < 3; ++w) {
    uint64_t word = 0;
    for (size_t b = 0; b < 8 && 8 * w + b < v.size(); ++b) {
      word |= static_cast<uint64_t>(static_cast<unsigned char>(v[8 * w + b])) << (8 * b);
    }
    sum += eplb::core::row_hash_term(word, w);
  }
  CHECK(hash_of(v) == eplb::core::row_hash_finish(sum, 21));
}

TEST_CASE("row_hash: every bit, its position and the length count") {
  for (size_t n : {1u, 7u, 8u, 9u, 64u, 1000u}) {
    const auto v = pattern(n);
    const uint64_t h = hash_of(v);
    for (size_t i = 0; i < n; i += (n > 64 ? 97 : 1)) {
      for (int bit = 0; bit < 8; bit += 3) {
        auto w = v;
        w[i] ^= static_cast<std::byte>(1 << bit);
        CHECK(hash_of(w) != h);
      }
    }
    if (n >= 16) {  // two different words swapped
      auto w = v;
      std::swap(w[0], w[8]);
      CHECK(hash_of(w) != h);
    }
    // Zeros of different lengths differ (an empty row's checksum names its size).
    CHECK(hash_of(std::vector<std::byte>(n)) != hash_of(std::vector<std::byte>(n + 1)));
  }
}
