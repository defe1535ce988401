// pread_full / pwrite_full: every byte moves, or the result says where and why it stopped.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstddef>
#include <string>
#include <vector>

#include "eplb/core/fd.hpp"
#include "eplb/fs/transfer.hpp"
#include "test_files.hpp"

namespace core = eplb::core;
namespace fs = eplb::fs;

namespace {

std::vector<std::byte> bytes_of(const std::string& text) {
  std::vector<std::byte> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<std::byte>(text[i]);
  return out;
}

}  // namespace

TEST_CASE("pwrite_full and pread_full move every byte at the offset") {
  const eplb::test::TempDir dir;
  const auto path = dir / "f";
  eplb::test::write_file(path, "0123456789");
  core::Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE(fd.get() >= 0);

  const auto data = bytes_of("abc");
  const fs::Transfer wrote = fs::pwrite_full(fd.get(), data, 4);
  CHECK(wrote.complete);
  CHECK(wrote.done == 3);
  CHECK(wrote.error == 0);
  CHECK(eplb::test::read_file(path) == "0123abc789");

  std::vector<std::byte> got(5);
  const fs::Transfer read = fs::pread_full(fd.get(), got, 3);
  CHECK(read.complete);
  CHECK(read.done == 5);
  CHECK(got == bytes_of("3abc7"));

  // Nothing to move is complete at once.
  CHECK(fs::pread_full(fd.get(), {}, 100).complete);
}

TEST_CASE("pread_full stops at the end of the file with no error") {
  const eplb::test::TempDir dir;
  const auto path = dir / "f";
  eplb::test::write_file(path, "0123456789");
  core::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd.get() >= 0);
  std::vector<std::byte> got(8);
  const fs::Transfer t = fs::pread_full(fd.get(), got, 6);
  CHECK_FALSE(t.complete);
  CHECK(t.done == 4);       // "6789"
  CHECK(t.attempted == 4);  // the call that found the end asked for the rest
  CHECK(t.error == 0);
  got.resize(4);
  CHECK(got == bytes_of("6789"));
}

TEST_CASE("pread_full and pwrite_full report the failing call's errno") {
  const eplb::test::TempDir dir;
  const auto path = dir / "f";
  eplb::test::write_file(path, "0123456789");
  core::Fd read_only(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(read_only.get() >= 0);
  const auto data = bytes_of("xy");
  const fs::Transfer wrote = fs::pwrite_full(read_only.get(), data, 0);
  CHECK_FALSE(wrote.complete);
  CHECK(wrote.done == 0);
  CHECK(wrote.attempted == 2);
  CHECK(wrote.error == EBADF);

  core::Fd dir_fd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dir_fd.get() >= 0);
  std::vector<std::byte> got(4);
  const fs::Transfer read = fs::pread_full(dir_fd.get(), got, 0);
  CHECK_FALSE(read.complete);
  CHECK(read.error == EISDIR);
  CHECK(eplb::test::read_file(path) == "0123456789");
}
