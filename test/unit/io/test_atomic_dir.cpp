#include <algorithm>
#include <catch2/catch.hpp>

#include "eplb/core/error.hpp"
#include "eplb/io/atomic_dir.hpp"
#include "io_test_util.hpp"

namespace eplb::io {
namespace {

namespace fs = std::filesystem;
using core::ErrorKind;
using test::error_text;
using test::TempDir;

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("staging path sits next to the output", "[io][atomic]") {
  CHECK(staging_path_for("a/b/out") == fs::path("a/b/.out.eplb-staging"));
  CHECK(staging_path_for("a/b/out/") == fs::path("a/b/.out.eplb-staging"));
  CHECK(staging_path_for("out") == fs::path(".out.eplb-staging"));
  CHECK(staging_path_for("/x/ckpt-new") == fs::path("/x/.ckpt-new.eplb-staging"));
}

TEST_CASE("create, commit and replace a directory", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  const fs::path staging = staging_path_for(out);
  ErrorKind kind = ErrorKind::kInternal;

  create_staging(staging, out, false);
  CHECK(fs::is_directory(staging));
  test::write_text(staging / "rank-00000.h5", "first");
  commit_staging(staging, out, false);
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});
  CHECK(test::read_text(out / "rank-00000.h5") == "first");

  CHECK(error_text([&] { create_staging(staging, out, false); }, &kind) ==
        "output '" + out.string() + "' already exists; pass --force to replace it");
  CHECK(kind == ErrorKind::kUsage);

  create_staging(staging, out, true);
  test::write_text(staging / "rank-00001.h5", "second");
  commit_staging(staging, out, true);
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});
  CHECK(listing(out) == std::vector<std::string>{"rank-00001.h5"});
  CHECK(test::read_text(out / "rank-00001.h5") == "second");
}

TEST_CASE("leftovers of an interrupted run are reported, not removed", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  const fs::path staging = staging_path_for(out);
  ErrorKind kind = ErrorKind::kInternal;
  fs::create_directory(staging);
  CHECK(error_text([&] { create_staging(staging, out, true); }, &kind) ==
        "staging directory '" + staging.string() +
            "' exists, left by an earlier run that did not finish; remove it");
  CHECK(kind == ErrorKind::kUsage);
  CHECK(fs::is_directory(staging));
  fs::remove(staging);

  // A crash between the two renames of a --force commit leaves the previous output here.
  const fs::path old = dir / ".ckpt-new.eplb-old";
  fs::create_directory(old);
  CHECK(error_text([&] { create_staging(staging, out, true); }, &kind) ==
        "directory '" + old.string() +
            "' exists: an earlier run with --force did not finish and it may hold the "
            "previous output; check it and remove it");
  CHECK(fs::is_directory(old));

  CHECK(error_text([&] { create_staging(dir / "no/.x.eplb-staging", dir / "no/x", false); }) ==
        "cannot create output '" + (dir / "no/x").string() + "': directory '" +
            (dir / "no").string() + "' does not exist");
}

TEST_CASE("commit without force refuses an output that appeared meanwhile", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  const fs::path staging = staging_path_for(out);
  create_staging(staging, out, false);
  fs::create_directory(out);
  CHECK(error_text([&] { commit_staging(staging, out, false); }) ==
        "output '" + out.string() + "' already exists; pass --force to replace it");
  CHECK(fs::is_directory(staging));
}

TEST_CASE("write_file_atomic replaces content and leaves no temporary", "[io][atomic]") {
  TempDir dir;
  const fs::path path = dir / "manifest.json";
  write_file_atomic(path, "{}\n");
  CHECK(test::read_text(path) == "{}\n");
  write_file_atomic(path, std::string(100000, 'x'));
  CHECK(test::read_text(path) == std::string(100000, 'x'));
  CHECK(listing(dir.path()) == std::vector<std::string>{"manifest.json"});

  ErrorKind kind = ErrorKind::kInternal;
  CHECK_THAT(error_text([&] { write_file_atomic(dir / "no/m.json", "x"); }, &kind),
             Catch::StartsWith("cannot create '" + (dir / "no/.m.json.tmp.").string()));
  CHECK(kind == ErrorKind::kIo);
  CHECK(error_text([&] { fsync_path(dir / "nope"); }) ==
        "cannot open '" + (dir / "nope").string() + "' to fsync it: No such file or directory");
  fsync_path(dir.path());
  fsync_path(path);
}

TEST_CASE("remove_tree_noexcept", "[io][atomic]") {
  TempDir dir;
  fs::create_directories(dir / "a/b/c");
  test::write_text(dir / "a/b/c/f", "x");
  remove_tree_noexcept(dir / "a");
  CHECK_FALSE(fs::exists(dir / "a"));
  remove_tree_noexcept(dir / "missing");  // no throw
}

}  // namespace eplb::io
