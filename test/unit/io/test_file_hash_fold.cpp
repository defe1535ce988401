// io::detail::FileHashFold: the whole-file XXH3 folded into the writes equals the hash of
// the file read back, whatever order the regions come in, or gives up honestly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "eplb/io/manifest.hpp"
#include "file_hash_fold.hpp"

namespace {

using eplb::io::detail::FileHashFold;
using Region = FileHashFold::Region;

// The reference: the file written out and hashed by io::describe_file.
uint64_t hash_of(const std::vector<std::byte>& file) {
  const auto path =
      std::filesystem::temp_directory_path() / ("eplb-fold-" + std::to_string(::getpid()) + ".bin");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(file.data()),
              static_cast<std::streamsize>(file.size()));
  }
  const auto entry = eplb::io::describe_file(path);
  std::filesystem::remove(path);
  return entry.xxh3;
}

struct Fixture {
  std::vector<std::byte> file;
  std::vector<Region> regions;
  FileHashFold::ReadFile reader() {
    return [this](uint64_t offset, std::span<std::byte> out) {
      REQUIRE(offset + out.size() <= file.size());
      std::memcpy(out.data(), file.data() + offset, out.size());
    };
  }
  std::span<const std::byte> bytes(size_t i) const {
    return {file.data() + regions[i].offset, regions[i].bytes};
  }
};

// Random gaps and regions (some small, some large), random contents.
Fixture make_file(std::mt19937& rng, size_t num_regions) {
  Fixture f;
  uint64_t at = 0;
  for (size_t i = 0; i < num_regions; ++i) {
    at += rng() % 3 == 0 ? 0 : rng() % 5000;  // a gap, or none
    const uint64_t bytes = rng() % 4 == 0 ? 100000 + rng() % 300000 : 1 + rng() % 3000;
    f.regions.push_back({at, bytes});
    at += bytes;
  }
  at += rng() % 2 ? rng() % 9000 : 0;  // a tail, or none
  f.file.resize(at);
  for (auto& b : f.file) b = static_cast<std::byte>(rng());
  // The constructor takes the regions in any order.
  std::shuffle(f.regions.begin(), f.regions.end(), rng);
  return f;
}

}  // namespace

TEST_CASE("the fold equals the file's hash, regions in file order or nearly") {
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    Fixture f = make_file(rng, 1 + rng() % 12);
    // Written in file order, except small regions, which may come early.
    std::vector<size_t> order(f.regions.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return f.regions[a].offset < f.regions[b].offset; });
    for (size_t i = 0; i + 1 < order.size(); ++i) {
      if (f.regions[order[i + 1]].bytes <= 3000 && rng() % 2) std::swap(order[i], order[i + 1]);
    }
    FileHashFold fold(f.regions, f.reader(), 4096);
    for (size_t i : order) fold.written(i, f.bytes(i));
    const auto folded = fold.finish(f.file.size());
    REQUIRE(folded.has_value());
    CHECK(*folded == hash_of(f.file));
  }
}

TEST_CASE("the fold gives up where it cannot be sure") {
  std::mt19937 rng(11);
  // Two large regions with a gap between them.
  Fixture f;
  f.file.resize(300000);
  for (auto& b : f.file) b = static_cast<std::byte>(rng());
  f.regions = {{1000, 100000}, {150000, 100000}};

  SECTION("a large region ahead of the cursor") {
    FileHashFold fold(f.regions, f.reader(), 4096);
    fold.written(1, f.bytes(1));
    CHECK(fold.failed());
    fold.written(0, f.bytes(0));
    CHECK_FALSE(fold.finish(f.file.size()).has_value());
  }
  SECTION("a gap rewritten after it was hashed (metadata written at close)") {
    FileHashFold fold(f.regions, f.reader(), 4096);
    fold.written(0, f.bytes(0));
    fold.written(1, f.bytes(1));
    f.file[120000] ^= std::byte{1};  // between the regions, already fed
    CHECK_FALSE(fold.finish(f.file.size()).has_value());
  }
  SECTION("a region never written") {
    FileHashFold fold(f.regions, f.reader(), 4096);
    fold.written(0, f.bytes(0));
    CHECK_FALSE(fold.finish(f.file.size()).has_value());
  }
  SECTION("a gap byte known to change by close is hashed as it will be, and checked") {
    const std::byte closed[1] = {std::byte{0}};
    f.file[20] = std::byte{1};  // "open for writing" while written
    FileHashFold fold(f.regions, f.reader(), 4096);
    fold.will_hold(20, closed);
    fold.written(0, f.bytes(0));
    fold.written(1, f.bytes(1));
    SECTION("cleared at close, as predicted") {
      f.file[20] = std::byte{0};
      CHECK(fold.finish(f.file.size()) == hash_of(f.file));
    }
    SECTION("left as it was: the prediction is wrong, no hash") {
      CHECK_FALSE(fold.finish(f.file.size()).has_value());
    }
  }
  SECTION("the tail may change until finish: it is read then") {
    FileHashFold fold(f.regions, f.reader(), 4096);
    fold.written(0, f.bytes(0));
    fold.written(1, f.bytes(1));
    f.file[299999] ^= std::byte{1};
    CHECK(fold.finish(f.file.size()) == hash_of(f.file));
  }
}
