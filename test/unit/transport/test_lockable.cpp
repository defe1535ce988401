// Host buffers handed out while the NCCL transport sets up in the background
// (nccl_memory.hpp): usable at once, page-locked later by whoever gets there first, and
// released safely whatever state they reached. Runs with or without a GPU: without one,
// page-locking fails, is reported, and the buffer stays usable.
#include <catch2/catch.hpp>

#if EPLB_HAVE_NCCL
#include <cstdint>
#include <cstring>
#include <vector>

#include "nccl_memory.hpp"

using eplb::transport::detail::allocate_lockable;
using eplb::transport::detail::lock_waiting;

TEST_CASE("lockable host buffers: usable at once, locked once, contents kept") {
  constexpr size_t kBytes = 3 * 4096 + 123;
  auto buffer = allocate_lockable(kBytes, 0);
  REQUIRE(buffer.data() != nullptr);
  CHECK(buffer.size() == kBytes);
  CHECK(reinterpret_cast<uintptr_t>(buffer.data()) % 4096 == 0);
  std::vector<std::byte> pattern(kBytes);
  for (size_t i = 0; i < kBytes; ++i) pattern[i] = std::byte(i * 7 + 3);
  std::memcpy(buffer.data(), pattern.data(), kBytes);  // written before it is locked

  const auto first = lock_waiting(0);
  // With a GPU it is locked (whole pages); without one the failure is reported.
  if (first.error.empty()) {
    CHECK(first.buffers == 1);
    CHECK(first.bytes == 4 * 4096);
  } else {
    CHECK(first.buffers == 0);
    CHECK_THAT(first.error, Catch::Contains("cudaHostRegister of 16384 bytes failed"));
  }
  CHECK(std::memcmp(buffer.data(), pattern.data(), kBytes) == 0);
  // Nothing is locked (or tried) twice.
  const auto second = lock_waiting(0);
  CHECK(second.buffers == 0);
  CHECK(second.error.empty());
}

TEST_CASE("lockable host buffers: released before locking, or for another device") {
  { auto gone = allocate_lockable(4096, 0); }  // released while still waiting
  auto other = allocate_lockable(100, 7);      // another device's
  const auto result = lock_waiting(0);
  CHECK(result.buffers == 0);
  CHECK(result.error.empty());
  std::memset(other.data(), 1, other.size());
}
#endif
