// Internal to lib/io: XXH3-64 at the speed of the CPU's widest usable vector unit.
//
// Debian's libxxhash 0.8.1 is built for baseline x86-64, so its XXH3_64bits runs the SSE2
// kernel (about 3 GB/s per core on the 2-core VM, docs/PERFORMANCE.md), and a rebalance
// hashes every byte it reads and every byte it writes. The same xxhash.h, compiled inline
// a second time with -mavx2 and chosen at run time when the CPU and the OS allow AVX2,
// runs about 2.4x faster. XXH3 is one function whatever the kernel: the values are
// identical (test/unit/io/test_xxh3.cpp checks both kernels against libxxhash).
//
// The one home of hashing in lib/io: xxh3_64 for one buffer (io::checksum, the synthetic
// data's keys), Xxh3Stream for a stream (the whole-file fold, zero rows, the journal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace eplb::io::detail {

// One XXH3-64 implementation: a one-shot hash and a streaming state (opaque here).
struct Xxh3Kernel {
  std::string_view name;  // "avx2", "sse2", ...
  uint64_t (*hash)(const void* data, size_t bytes);
  void* (*create)();  // nullptr when out of memory; the state is reset
  void (*destroy)(void* state);
  void (*reset)(void* state);
  void (*update)(void* state, const void* data, size_t bytes);
  uint64_t (*digest)(const void* state);
};

// The baseline kernel (always usable) and the AVX2 one (nullptr when this build has none).
const Xxh3Kernel& xxh3_generic_kernel();
const Xxh3Kernel* xxh3_avx2_kernel();

// The fastest kernel this CPU runs; chosen once. EPLB_XXH3=generic forces the baseline
// kernel (for measuring the difference).
const Xxh3Kernel& xxh3_kernel();

inline uint64_t xxh3_64(const void* data, size_t bytes) { return xxh3_kernel().hash(data, bytes); }

// A streaming XXH3-64 on the chosen kernel.
class Xxh3Stream {
 public:
  explicit Xxh3Stream(const Xxh3Kernel& kernel = xxh3_kernel());
  Xxh3Stream(Xxh3Stream&&) noexcept = default;
  Xxh3Stream& operator=(Xxh3Stream&&) noexcept = default;
  void reset() { kernel_->reset(state_.get()); }
  void update(const void* data, size_t bytes) { kernel_->update(state_.get(), data, bytes); }
  uint64_t digest() const { return kernel_->digest(state_.get()); }

 private:
  struct Destroy {
    void (*destroy)(void*);
    void operator()(void* state) const { destroy(state); }
  };
  const Xxh3Kernel* kernel_;
  std::unique_ptr<void, Destroy> state_;
};

}  // namespace eplb::io::detail
