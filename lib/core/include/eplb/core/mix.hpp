// splitmix64 (Steele, Lea and Flood): the one 64-bit mixing function of the tree, for
// synthetic weights (io), benchmark patterns and test payloads.
#pragma once

#include <cstdint>

// Functions the GPU calls too (core::row_hash's device twin) are __host__ __device__ for nvcc.
#if defined(__CUDACC__)
#define EPLB_HOST_DEVICE __host__ __device__
#else
#define EPLB_HOST_DEVICE
#endif

namespace eplb::core {

// splitmix64's increment (the golden ratio in 64 bits).
inline constexpr uint64_t kSplitmixGamma = 0x9E3779B97F4A7C15ull;

// splitmix64's finalizer: a strong 64-bit mix.
EPLB_HOST_DEVICE constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One splitmix64 step from state `x`: mix64(x + gamma).
constexpr uint64_t splitmix64(uint64_t x) { return mix64(x + kSplitmixGamma); }

}  // namespace eplb::core
