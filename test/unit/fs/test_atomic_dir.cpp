#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <catch2/catch.hpp>

#include "eplb/core/error.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/fs/free_space.hpp"
#include "eplb/fs/output_owner.hpp"
#include "eplb/fs/publish.hpp"
#include "test_files.hpp"

namespace eplb::fs {
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

// A checkpoint-looking directory: what --force may replace.
static void make_checkpoint(const fs::path& dir, const std::string& content) {
  fs::create_directories(dir);
  test::write_file(dir / "manifest.json", content);
}

const OutputModes kModes{0755, 0644};

TEST_CASE("own, commit and replace a checkpoint", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  ErrorKind kind = ErrorKind::kInternal;
  {
    OutputOwner owner(out, false);
    CHECK(owner.staging() == staging_path_for(out));
    CHECK(fs::is_directory(owner.staging()));
    CHECK((fs::status(owner.staging()).permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK(fs::is_regular_file(lock_path_for(out)));
    test::write_file(owner.staging() / "manifest.json", "first");
    owner.commit(kModes);
  }
  // Lock released and removed: nothing but the output remains.
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});
  CHECK(test::read_file(out / "manifest.json") == "first");
  CHECK((fs::status(out).permissions() & fs::perms::all) == fs::perms(0755));
  CHECK((fs::status(out / "manifest.json").permissions() & fs::perms::all) == fs::perms(0644));

  CHECK(error_text([&] { OutputOwner owner(out, false); }, &kind) ==
        "output '" + out.string() + "' already exists; pass --force to replace it");
  CHECK(kind == ErrorKind::kUsage);
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});

  {
    OutputOwner owner(out, true);
    test::write_file(owner.staging() / "manifest.json", "second");
    owner.commit(kModes);
  }
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});
  CHECK(test::read_file(out / "manifest.json") == "second");

  // Without commit, the staging directory and the lock go away.
  { OutputOwner owner(out, true); }
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});
}

TEST_CASE("--force replaces only an eplb checkpoint", "[io][atomic]") {
  TempDir dir;
  ErrorKind kind = ErrorKind::kInternal;
  fs::create_directories(dir / "thesis/sub");
  test::write_file(dir / "thesis/notes.txt", "mine");
  CHECK(error_text([&] { OutputOwner owner(dir / "thesis", true); }, &kind) ==
        "cannot create output '" + (dir / "thesis").string() +
            "': it exists and is a directory without manifest.json, not an eplb checkpoint; "
            "--force replaces only an eplb checkpoint: remove it by hand");
  CHECK(kind == ErrorKind::kUsage);
  test::write_file(dir / "file", "data");
  CHECK(error_text([&] { OutputOwner owner(dir / "file", true); }) ==
        "cannot create output '" + (dir / "file").string() +
            "': it exists and is a file; --force replaces only an eplb checkpoint: remove it "
            "by hand");
  make_checkpoint(dir / "real", "x");
  fs::create_directory_symlink(dir / "real", dir / "link");
  CHECK_THAT(error_text([&] { OutputOwner owner(dir / "link", true); }),
             Catch::Contains("it exists and is a symbolic link"));
  CHECK(test::read_file(dir / "thesis/notes.txt") == "mine");
  CHECK(test::read_file(dir / "file") == "data");
  CHECK(listing(dir.path()) == std::vector<std::string>{"file", "link", "real", "thesis"});
}

TEST_CASE("a live owner is named, never disturbed", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  ErrorKind kind = ErrorKind::kInternal;
  OutputOwner first(out, false);
  test::write_file(first.staging() / "rank-00000.h5", "first's");
  // flock is per open file: a second owner in this process is refused like another run.
  const std::string text = error_text([&] { OutputOwner second(out, false); }, &kind);
  CHECK_THAT(text, Catch::StartsWith("output '" + out.string() +
                                     "' is being written by another run (host "));
  CHECK_THAT(text, Catch::Contains(", pid " + std::to_string(::getpid())));
  CHECK_THAT(text, Catch::EndsWith("); wait for it to finish or stop it"));
  CHECK(kind == ErrorKind::kUsage);
  CHECK(test::read_file(first.staging() / "rank-00000.h5") == "first's");
}

TEST_CASE("a commit refuses a staging directory that is no longer its own", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  ErrorKind kind = ErrorKind::kInternal;
  OutputOwner first(out, false);
  // Someone removes the staging directory and the lock; another run starts meanwhile.
  fs::remove_all(first.staging());
  fs::remove(lock_path_for(out));
  {
    OutputOwner second(out, false);
    test::write_file(second.staging() / "rank-00000.h5", "second's");
    CHECK_THAT(error_text([&] { first.commit(kModes); }, &kind),
               Catch::StartsWith("this run no longer owns '" + staging_path_for(out).string()));
    CHECK(kind == ErrorKind::kIo);
    CHECK_FALSE(fs::exists(out));
    first.discard();  // must not remove the second run's directory
    CHECK(test::read_file(second.staging() / "rank-00000.h5") == "second's");
    second.commit(kModes);
  }
  CHECK(test::read_file(out / "rank-00000.h5") == "second's");
}

TEST_CASE("a dead run's leftovers are recovered", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  const fs::path staging = staging_path_for(out);
  const fs::path old = old_path_for(out);

  // A staging directory with a lock file nobody holds: discarded.
  fs::create_directory(staging);
  test::write_file(staging / "rank-00000.h5", "half");
  test::write_file(lock_path_for(out), "host=elsewhere\npid=42\njob=77\nstarted=then\n");
  { OutputOwner owner(out, false); }
  CHECK(listing(dir.path()).empty());

  // Died between the renames of a --force commit: the previous output comes back.
  make_checkpoint(old, "previous");
  fs::create_directory(staging);
  { OutputOwner owner(out, true); }
  CHECK(listing(dir.path()) == std::vector<std::string>{"ckpt-new"});
  CHECK(test::read_file(out / "manifest.json") == "previous");

  // Died after the second rename: the complete output stays, the old copy goes.
  make_checkpoint(old, "older");
  {
    OutputOwner owner(out, true);
    CHECK_FALSE(fs::exists(old));
  }
  CHECK(test::read_file(out / "manifest.json") == "previous");

  // A plain file planted at the staging name is not ours to remove.
  test::write_file(staging, "planted");
  CHECK(error_text([&] { OutputOwner owner(out, true); }) ==
        "'" + staging.string() +
            "' is a file, not a directory eplb-rebalance made: remove it by hand");
  CHECK(test::read_file(staging) == "planted");
}

TEST_CASE("planted symbolic links are never followed", "[io][atomic]") {
  TempDir dir;
  const fs::path out = dir / "ckpt-new";
  fs::create_directory(dir / "victim");
  fs::create_directory_symlink(dir / "victim", staging_path_for(out));
  CHECK(error_text([&] { OutputOwner owner(out, false); }) ==
        "'" + staging_path_for(out).string() +
            "' is a symbolic link, not a directory eplb-rebalance made: remove it by hand");
  fs::remove(staging_path_for(out));
  test::write_file(dir / "victim/target", "keep");
  fs::create_symlink(dir / "victim/target", lock_path_for(out));
  CHECK(error_text([&] { OutputOwner owner(out, false); }) ==
        "cannot create output '" + out.string() + "': lock file '" + lock_path_for(out).string() +
            "' is a symbolic link; refusing to follow it (remove it)");
  CHECK(test::read_file(dir / "victim/target") == "keep");
  CHECK(listing(dir / "victim") == std::vector<std::string>{"target"});
}

TEST_CASE("a world-writable sticky parent works, the staging directory stays private",
          "[io][atomic]") {
  TempDir dir;
  fs::create_directory(dir / "shared");
  fs::permissions(dir / "shared", fs::perms(01777));
  const fs::path out = dir / "shared/ckpt";
  OutputOwner owner(out, false);
  CHECK((fs::status(owner.staging()).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK((fs::status(lock_path_for(out)).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
  test::write_file(owner.staging() / "manifest.json", "x");
  owner.commit(OutputModes{0750, 0640});
  CHECK((fs::status(out).permissions() & fs::perms::all) == fs::perms(0750));
  CHECK((fs::status(out / "manifest.json").permissions() & fs::perms::all) == fs::perms(0640));
}

TEST_CASE("output modes follow the input, never wider than the umask", "[io][atomic]") {
  TempDir dir;
  make_checkpoint(dir / "in", "x");
  fs::permissions(dir / "in", fs::perms(0750));
  fs::permissions(dir / "in/manifest.json", fs::perms(0640));
  const mode_t mask = ::umask(022);
  CHECK(OutputModes::like(dir / "in").dir == 0750);
  CHECK(OutputModes::like(dir / "in").file == 0640);
  CHECK(OutputModes::like(std::nullopt).dir == 0755);
  CHECK(OutputModes::like(std::nullopt).file == 0644);
  ::umask(077);
  CHECK(OutputModes::like(dir / "in").dir == 0700);
  CHECK(OutputModes::like(dir / "in").file == 0600);
  // An input wider than the umask, with set-id and execute bits: never copied.
  fs::permissions(dir / "in", fs::perms(02777));
  fs::permissions(dir / "in/manifest.json", fs::perms(04777));
  ::umask(022);
  CHECK(OutputModes::like(dir / "in").dir == 0755);
  CHECK(OutputModes::like(dir / "in").file == 0644);
  ::umask(mask);
}

TEST_CASE("output modes: reading the umask never widens another thread's files", "[io][atomic]") {
  // umask(0) then umask(mask) to read it would let a file created in between get 0666.
  TempDir dir;
  const mode_t mask = ::umask(022);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong_modes{0};  // Catch2's CHECK is not thread-safe
  std::thread reader([&] {
    while (!stop.load()) {
      if (OutputModes::like(std::nullopt).file != 0644) ++wrong_modes;
    }
  });
  int wider = 0;
  for (int i = 0; i < 20000; ++i) {
    const fs::path path = dir / ("f" + std::to_string(i % 8));
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    if ((st.st_mode & 0777) != 0644) ++wider;
    ::close(fd);
    fs::remove(path);
  }
  stop = true;
  reader.join();
  ::umask(mask);
  CHECK(wider == 0);
  CHECK(wrong_modes == 0);
}

TEST_CASE("cannot create output: a missing parent, a parent that is a file", "[io][atomic]") {
  TempDir dir;
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { OutputOwner owner(dir / "no/x", false); }, &kind) ==
        "cannot create output '" + (dir / "no/x").string() + "': directory '" +
            (dir / "no").string() + "' does not exist");
  CHECK(kind == ErrorKind::kUsage);
  test::write_file(dir / "f", "");
  CHECK(error_text([&] { OutputOwner owner(dir / "f/x", false); }, &kind) ==
        "cannot create output '" + (dir / "f/x").string() + "': '" + (dir / "f").string() +
            "' is a file, not a directory");
  CHECK(kind == ErrorKind::kUsage);
}

TEST_CASE("owner info round trip", "[io][atomic]") {
  OwnerInfo info{"node07", 1234, "5678", "2026-11-28T12:00:00Z"};
  CHECK(OwnerInfo::from_text(info.to_text()).describe() ==
        "host node07, pid 1234, job 5678, started 2026-11-28T12:00:00Z");
  CHECK(OwnerInfo::from_text("garbage").describe() == "owner unknown");
}

TEST_CASE("write_file_atomic replaces content and leaves no temporary", "[io][atomic]") {
  TempDir dir;
  const fs::path path = dir / "manifest.json";
  write_file_atomic(path, "{}\n");
  CHECK(test::read_file(path) == "{}\n");
  write_file_atomic(path, std::string(100000, 'x'));
  CHECK(test::read_file(path) == std::string(100000, 'x'));
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
  test::write_file(dir / "a/b/c/f", "x");
  remove_tree_noexcept(dir / "a");
  CHECK_FALSE(fs::exists(dir / "a"));
  remove_tree_noexcept(dir / "missing");  // no throw
}

TEST_CASE("a job that cannot fit is refused with both figures", "[io][atomic]") {
  TempDir dir;
  const auto free = free_bytes(dir.path());
  REQUIRE(free.has_value());  // a local disk says how much it has free
  CHECK_NOTHROW(require_free_space(dir.path(), 0, "nothing"));
  CHECK_NOTHROW(require_free_space(dir.path(), *free / 2, "half of it"));
  ErrorKind kind{};
  const std::string text =
      error_text([&] { require_free_space(dir.path(), *free + (1ull << 40), "the test"); }, &kind);
  CHECK(kind == ErrorKind::kIo);
  CHECK_THAT(text, Catch::Matchers::StartsWith("the test needs at least "));
  CHECK_THAT(text, Catch::Matchers::Contains(" on the filesystem of '" + dir.path().string() +
                                             "', which has "));
  CHECK_THAT(text, Catch::Matchers::EndsWith(
                       "free: nothing was written; make room or choose another directory"));
  CHECK_THAT(error_text([&] { require_free_space(dir.path(), ~0ull, "x", "do this"); }),
             Catch::Matchers::EndsWith("nothing was written; do this"));
  // A path that does not exist: the filesystem cannot say, and nothing is refused.
  CHECK_FALSE(free_bytes(dir.path() / "missing").has_value());
  CHECK_NOTHROW(require_free_space(dir.path() / "missing", ~0ull, "x"));
}

}  // namespace eplb::fs
