// io::detail's XXH3 kernels (lib/io/src/xxh3.hpp): every kernel this machine runs gives
// libxxhash's XXH3-64, one-shot and streamed in uneven pieces, at every length class
// XXH3 treats differently (0, 1-3, 4-8, 9-16, 17-128, 129-240, stripes, blocks, and the
// unaligned starts rows of odd sizes produce).
#include <xxhash.h>
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "xxh3.hpp"

namespace {

using eplb::io::detail::Xxh3Kernel;
using eplb::io::detail::Xxh3Stream;

std::vector<const Xxh3Kernel*> kernels() {
  std::vector<const Xxh3Kernel*> out{&eplb::io::detail::xxh3_generic_kernel()};
  if (const Xxh3Kernel* avx2 = eplb::io::detail::xxh3_avx2_kernel()) out.push_back(avx2);
  return out;
}

}  // namespace

TEST_CASE("every XXH3 kernel equals libxxhash, one-shot and streamed") {
  std::mt19937_64 rng(42);
  std::vector<unsigned char> bytes((size_t{1} << 20) + 4096 + 7);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng());
  const std::vector<size_t> sizes{0,
                                  1,
                                  3,
                                  4,
                                  8,
                                  9,
                                  16,
                                  17,
                                  128,
                                  129,
                                  240,
                                  241,
                                  255,
                                  256,
                                  1023,
                                  1024,
                                  1025,
                                  4095,
                                  4096,
                                  8191,
                                  65536,
                                  100003,
                                  size_t{1} << 20};
  for (const Xxh3Kernel* kernel : kernels()) {
    INFO("kernel " << kernel->name);
    for (size_t size : sizes) {
      for (size_t start : {size_t{0}, size_t{1}, size_t{7}}) {
        INFO("size " << size << ", start " << start);
        const unsigned char* p = bytes.data() + start;
        const uint64_t want = XXH3_64bits(p, size);
        CHECK(kernel->hash(p, size) == want);
        Xxh3Stream stream(*kernel);
        size_t done = 0, piece = 1;
        while (done < size) {
          const size_t n = std::min(piece, size - done);
          stream.update(p + done, n);
          done += n;
          piece = piece * 3 + 5;  // uneven pieces, across the 256-byte internal buffer
        }
        CHECK(stream.digest() == want);
        stream.reset();
        stream.update(p, size);
        CHECK(stream.digest() == want);
      }
    }
  }
}

TEST_CASE("the chosen XXH3 kernel is the AVX2 one wherever the CPU has AVX2") {
  const Xxh3Kernel* avx2 = eplb::io::detail::xxh3_avx2_kernel();
  if (avx2 == nullptr || std::getenv("EPLB_XXH3") != nullptr) return;  // nothing to choose
  CHECK(eplb::io::detail::xxh3_kernel().name == avx2->name);
}
