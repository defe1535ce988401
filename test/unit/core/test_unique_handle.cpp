// UniqueHandle: every owned value is closed exactly once, moves transfer ownership, and
// release() gives it up. Fd: the file-descriptor instance, on real descriptors.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <type_traits>
#include <utility>
#include <vector>

#include "eplb/core/fd.hpp"
#include "eplb/core/unique_handle.hpp"

namespace core = eplb::core;

namespace {

// Records every close, so a test can check which values were closed and in what order.
std::vector<int>& closed() {
  static std::vector<int> values;
  return values;
}

struct CountingTraits {
  static int null() noexcept { return -7; }  // not 0 or -1: the null value is the traits'
  static void close(int value) noexcept { closed().push_back(value); }
};
using Counted = core::UniqueHandle<int, CountingTraits>;

// A struct value, as the buffers use (pointer, size, how to free).
struct Memory {
  int id = 0;
  size_t bytes = 0;
  bool operator==(const Memory&) const = default;
};
struct MemoryTraits {
  static Memory null() noexcept { return {}; }
  static void close(Memory m) noexcept {
    closed().push_back(m.id * 1000 + static_cast<int>(m.bytes));
  }
};

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

}  // namespace

static_assert(!std::is_copy_constructible_v<Counted>);
static_assert(!std::is_copy_assignable_v<Counted>);
static_assert(std::is_nothrow_move_constructible_v<Counted>);
static_assert(std::is_nothrow_move_assignable_v<Counted>);

TEST_CASE("UniqueHandle: empty by default, closes once on destruction") {
  closed().clear();
  {
    Counted empty;
    CHECK(empty.empty());
    CHECK_FALSE(empty);
    CHECK(empty.get() == -7);
  }
  CHECK(closed().empty());  // an empty owner closes nothing
  {
    Counted owner(3);
    CHECK(owner);
    CHECK(owner.get() == 3);
  }
  CHECK(closed() == std::vector<int>{3});
}

TEST_CASE("UniqueHandle: moves transfer ownership; assignment closes the old value first") {
  closed().clear();
  {
    Counted a(1);
    Counted b(std::move(a));
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    CHECK(b.get() == 1);
    Counted c(2);
    c = std::move(b);
    CHECK(closed() == std::vector<int>{2});  // c's own value, closed at the assignment
    CHECK(b.empty());                        // NOLINT(bugprone-use-after-move)
    CHECK(c.get() == 1);
    auto& self = c;
    c = std::move(self);  // self-move keeps the value
    CHECK(c.get() == 1);
    CHECK(closed() == std::vector<int>{2});
  }
  CHECK(closed() == std::vector<int>{2, 1});
}

TEST_CASE("UniqueHandle: reset closes, release does not") {
  closed().clear();
  Counted owner(4);
  owner.reset(5);
  CHECK(closed() == std::vector<int>{4});
  CHECK(owner.get() == 5);
  const int raw = owner.release();
  CHECK(raw == 5);
  CHECK(owner.empty());
  owner.reset();
  CHECK(closed() == std::vector<int>{4});  // nothing left to close
  owner.reset(6);
  owner.reset();
  CHECK(closed() == std::vector<int>{4, 6});
}

TEST_CASE("UniqueHandle: a struct value is closed whole, once") {
  closed().clear();
  {
    core::UniqueHandle<Memory, MemoryTraits> a(Memory{2, 64});
    core::UniqueHandle<Memory, MemoryTraits> b;
    b = std::move(a);
    CHECK(a.get() == Memory{});  // NOLINT(bugprone-use-after-move)
    CHECK(b.get().bytes == 64);
  }
  CHECK(closed() == std::vector<int>{2064});
}

TEST_CASE("Fd: closes the descriptor it owns, and only that") {
  int fds[2] = {-1, -1};
  REQUIRE(::pipe(fds) == 0);
  {
    core::Fd read_end(fds[0]);
    core::Fd write_end(fds[1]);
    core::Fd moved(std::move(write_end));
    CHECK(write_end.get() == -1);  // NOLINT(bugprone-use-after-move)
    CHECK(fd_is_open(fds[1]));
    const int raw = read_end.release();
    CHECK(raw == fds[0]);
  }
  CHECK_FALSE(fd_is_open(fds[1]));  // closed by `moved`
  CHECK(fd_is_open(fds[0]));        // released: still open, ours to close
  ::close(fds[0]);
}
