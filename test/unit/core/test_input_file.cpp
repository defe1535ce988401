// read_input_file: regular files only, bounded size, clear errors, never blocks.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "test_files.hpp"

namespace core = eplb::core;
namespace fs = std::filesystem;

namespace {

using eplb::test::TempDir;

// The error's kind and its one message, or a failure when nothing was thrown.
std::pair<core::ErrorKind, std::string> error_of(const fs::path& path, size_t limit) {
  try {
    core::read_input_file(path, "placement file", limit);
  } catch (const core::Error& error) {
    REQUIRE(error.problems().size() == 1);
    return {error.kind(), error.problems()[0]};
  }
  FAIL("no error for " << path);
  return {};
}

}  // namespace

TEST_CASE("read_input_file reads a regular file whole", "[core][file]") {
  TempDir dir;
  std::ofstream(dir.path() / "p.json") << "[[0, 1]]\n";
  CHECK(core::read_input_file(dir.path() / "p.json", "placement file") == "[[0, 1]]\n");
}

TEST_CASE("read_input_file refuses what is not a small regular file", "[core][file]") {
  TempDir dir;
  const fs::path fifo = dir.path() / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Would block forever if the FIFO were opened without O_NONBLOCK or read.
  CHECK(error_of(fifo, 1024) ==
        std::pair{
            core::ErrorKind::kInput,
            "'" + fifo.string() + "': placement file must be a regular file, but it is a FIFO"});
  CHECK(error_of("/dev/zero", 1024) ==
        std::pair{core::ErrorKind::kInput,
                  std::string("'/dev/zero': placement file must be a regular file, but it is a "
                              "character device")});
  CHECK(error_of(dir.path() / "none", 1024) ==
        std::pair{core::ErrorKind::kInput,
                  "'" + (dir.path() / "none").string() + "': placement file does not exist"});
  std::ofstream(dir.path() / "big") << std::string(2000, 'x');
  CHECK(error_of(dir.path() / "big", 1000) ==
        std::pair{core::ErrorKind::kInput,
                  "'" + (dir.path() / "big").string() +
                      "': placement file is 2000 bytes, above the limit of 1000 bytes for an "
                      "input file"});
  std::ofstream(dir.path() / "file") << "x";
  CHECK(error_of(dir.path() / "file" / "below", 1000) ==
        std::pair{core::ErrorKind::kInput, "'" + (dir.path() / "file" / "below").string() +
                                               "': placement file has a parent that is not a "
                                               "directory"});
}
