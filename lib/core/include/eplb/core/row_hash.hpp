// The row checksum of the in-server library: a 64-bit hash that a GPU computes as fast as it
// reads (an order-free sum of mixed 8-byte words, so any number of threads may add their
// share) and the host computes identically (runtime/row_hash.hpp is the device twin; the GPU
// tests compare the two). Not xxh3: the checkpoint's checksums stay xxh3 (lib/io).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "eplb/core/mix.hpp"

namespace eplb::core {

// One word's share: word `index` of a row (0-based), little-endian, the tail zero-padded.
EPLB_HOST_DEVICE constexpr uint64_t row_hash_term(uint64_t word, uint64_t index) {
  return mix64(word ^ ((index + 1) * kSplitmixGamma));
}

// The sum of the terms, folded with the row's length.
EPLB_HOST_DEVICE constexpr uint64_t row_hash_finish(uint64_t sum, uint64_t bytes) {
  return mix64(sum ^ bytes);
}

// Local and pure: the checksum of `bytes` bytes at `data`.
inline uint64_t row_hash(const std::byte* data, size_t bytes) {
  uint64_t sum = 0;
  const size_t words = bytes / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w = 0;
    std::memcpy(&w, data + 8 * i, 8);
    sum += row_hash_term(w, i);
  }
  if (bytes % 8 != 0) {
    uint64_t w = 0;
    std::memcpy(&w, data + 8 * words, bytes % 8);
    sum += row_hash_term(w, words);
  }
  return row_hash_finish(sum, bytes);
}

}  // namespace eplb::core
