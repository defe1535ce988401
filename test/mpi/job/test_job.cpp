// lib/job across processes (mpirun -np 1, 2, 4, 8): the agreement, CheckpointOutput
// (ownership, commit, recovery, refusals) and the shared-directory check.
#include <mpi.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/output_owner.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/checkpoint_output.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/runtime/mpi.hpp"
#include "test_files.hpp"

namespace {

namespace core = eplb::core;
namespace job = eplb::job;
namespace runtime = eplb::runtime;
namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;
using namespace std::chrono_literals;

const runtime::Group kWorld{MPI_COMM_WORLD, 60s};

struct World {
  int rank = 0;
  int size = 1;
  World() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
};

// A directory every rank sees: rank 0 makes it, the others learn its name; removed by
// rank 0 after every rank is done with it.
class SharedTempDir {
 public:
  SharedTempDir() {
    if (World().rank == 0) mine_.emplace();
    path_ = runtime::broadcast_string(kWorld, mine_ ? mine_->path().string() : "", "temp dir");
  }
  ~SharedTempDir() { runtime::barrier(kWorld, "temp dir done"); }
  const sfs::path& path() const { return path_; }

 private:
  std::optional<eplb::test::TempDir> mine_;
  sfs::path path_;
};

// The kind every rank threw, or nullopt when none threw.
template <typename Fn>
std::optional<ErrorKind> kind_thrown(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  return std::nullopt;
}

// A placement of `ep_size` ranks x 1 slot x 1 layer, expert r on rank r.
eplb::placement::Placement one_slot_each(int ep_size) {
  std::string map;
  for (int r = 0; r < ep_size; ++r) map += (r ? "," : "") + std::to_string(r);
  return eplb::placement::parse_placement(
      R"({"format": "eplb-placement", "version": 1, "ep_size": )" + std::to_string(ep_size) +
          R"(, "physical_to_logical_map": [[)" + map + "]]}",
      {});
}

std::string shard_name(int rank) { return eplb::io::shard_file_name(rank); }

}  // namespace

TEST_CASE("job: agree throws the worst kind on every rank, and nothing when all are fine") {
  World w;
  core::ProblemList none(ErrorKind::kInput);
  CHECK_FALSE(kind_thrown([&] { job::agree(kWorld, none, "test: all fine"); }));

  // The last rank has an input problem, rank 0 a usage problem (when they differ): every
  // rank throws usage (64 > 2), marked as reported elsewhere.
  core::ProblemList mine(w.rank == 0 && w.size > 1 ? ErrorKind::kUsage : ErrorKind::kInput);
  if (w.rank == w.size - 1) mine.add("last rank's problem");
  if (w.rank == 0 && w.size > 1) mine.add("rank 0's problem");
  bool reported = false;
  const auto kind = kind_thrown([&] {
    try {
      job::agree(kWorld, mine, "test: some fail");
    } catch (const Error& e) {
      reported = e.reported();
      throw;
    }
  });
  REQUIRE(kind.has_value());
  CHECK(*kind == (w.size > 1 ? ErrorKind::kUsage : ErrorKind::kInput));
  CHECK(reported);
}

TEST_CASE("job: capture turns an error into problems, at_layer names the layer") {
  core::ProblemList problems(ErrorKind::kInput);
  CHECK_FALSE(job::capture(problems, [] { throw Error(ErrorKind::kIo, "disk gone"); }));
  CHECK(problems.kind() == ErrorKind::kIo);
  CHECK(problems.problems() == std::vector<std::string>{"disk gone"});
  CHECK(eplb::test::error_text([] {
          job::at_layer(7, [] { throw Error(ErrorKind::kComm, "peer 3 silent"); });
        }) == "layer 7: peer 3 silent");
}

TEST_CASE("job: CheckpointOutput owns the name, every rank writes, rank 0 commits") {
  World w;
  runtime::MpiSession session(nullptr, nullptr, 60s);
  SharedTempDir dir;
  const sfs::path out = dir.path() / "out";
  {
    job::CheckpointOutput output(
        session, {out, false, {1 << 20, 8}, "the new checkpoint", "test identity", std::nullopt});
    CHECK(output.staging() == eplb::fs::staging_path_for(out));
    CHECK(output.checkpoint_id() == eplb::io::checkpoint_id_for("test identity"));
    CHECK(sfs::is_directory(output.staging()));  // rank 0 made it; every rank sees it
    CHECK(sfs::exists(eplb::fs::lock_path_for(out)));
    const sfs::path mine = output.staging() / shard_name(w.rank);
    eplb::test::write_file(mine, "rank " + std::to_string(w.rank));
    eplb::io::Manifest manifest;
    manifest.placement = one_slot_each(w.size);
    manifest.tensors = eplb::io::parse_tensor_specs("w:fp32:2");
    output.commit({{mine, 42}}, manifest);
  }
  runtime::barrier(kWorld, "committed");
  CHECK(sfs::is_regular_file(out / eplb::io::kManifestName));
  for (int r = 0; r < w.size; ++r) {
    CHECK(eplb::test::read_file(out / shard_name(r)) == "rank " + std::to_string(r));
  }
  const auto manifest = eplb::io::load_manifest(out);
  REQUIRE(manifest.files.size() == static_cast<size_t>(w.size));
  CHECK(manifest.files.back().name == shard_name(w.size - 1));
  CHECK(manifest.files.back().xxh3 == 42);
  CHECK(manifest.checkpoint_id == eplb::io::checkpoint_id_for("test identity"));
  CHECK_FALSE(sfs::exists(eplb::fs::staging_path_for(out)));
  CHECK_FALSE(sfs::exists(eplb::fs::lock_path_for(out)));
}

TEST_CASE("job: CheckpointOutput refuses on every rank, leaving nothing behind") {
  World w;
  runtime::MpiSession session(nullptr, nullptr, 60s);
  SharedTempDir dir;
  const sfs::path out = dir.path() / "out";
  if (w.rank == 0) sfs::create_directory(out);  // not a checkpoint: no manifest.json
  runtime::barrier(kWorld, "output made");
  // Exists without --force: usage (exit 64) on every rank.
  CHECK(kind_thrown([&] {
          job::CheckpointOutput output(session, {out, false, {0}, "x", "id", std::nullopt});
        }) == ErrorKind::kUsage);
  // --force over a directory that is not ours: usage too.
  CHECK(kind_thrown([&] {
          job::CheckpointOutput output(session, {out, true, {0}, "x", "id", std::nullopt});
        }) == ErrorKind::kUsage);
  // More bytes than any filesystem has: I/O (exit 3), after rank 0 took the name; the
  // staging directory and the lock go with the failure.
  const sfs::path other = dir.path() / "other";
  CHECK(kind_thrown([&] {
          job::CheckpointOutput output(session, {other, false, {~0ull}, "x", "id", std::nullopt});
        }) == ErrorKind::kIo);
  runtime::barrier(kWorld, "refused");
  CHECK_FALSE(sfs::exists(other));
  CHECK_FALSE(sfs::exists(eplb::fs::staging_path_for(other)));
  CHECK_FALSE(sfs::exists(eplb::fs::lock_path_for(other)));
  CHECK(sfs::is_empty(out));  // the user's directory untouched
}

TEST_CASE("job: a run that fails before its commit leaves the output absent") {
  World w;
  runtime::MpiSession session(nullptr, nullptr, 60s);
  SharedTempDir dir;
  const sfs::path out = dir.path() / "out";
  const auto kind = kind_thrown([&] {
    job::CheckpointOutput output(session, {out, false, {0}, "x", "id", std::nullopt});
    eplb::test::write_file(output.staging() / shard_name(w.rank), "half");
    core::ProblemList problems(ErrorKind::kIo);
    if (w.rank == w.size - 1) problems.add("the last rank's write failed");
    job::agree(kWorld, problems, "test: writing");
  });
  CHECK(kind == ErrorKind::kIo);
  runtime::barrier(kWorld, "failed");
  CHECK_FALSE(sfs::exists(out));
  CHECK_FALSE(sfs::exists(eplb::fs::staging_path_for(out)));
  CHECK_FALSE(sfs::exists(eplb::fs::lock_path_for(out)));
}

TEST_CASE("job: CheckpointOutput recovers a dead run's staging directory by itself") {
  World w;
  runtime::MpiSession session(nullptr, nullptr, 60s);
  SharedTempDir dir;
  const sfs::path out = dir.path() / "out";
  if (w.rank == 0) {
    // What a killed run leaves: its staging directory with a shard, and its lock file
    // naming a process that is gone.
    sfs::create_directory(eplb::fs::staging_path_for(out));
    eplb::test::write_file(eplb::fs::staging_path_for(out) / "rank-00000.h5", "stale");
    eplb::test::write_file(eplb::fs::lock_path_for(out),
                           "host=elsewhere\npid=42\njob=77\nstarted=then\n");
  }
  runtime::barrier(kWorld, "leftovers made");
  {
    job::CheckpointOutput output(session, {out, false, {0}, "x", "id", std::nullopt});
    // The stale shard is gone: the staging directory is a new, empty one.
    CHECK_FALSE(sfs::exists(output.staging() / "rank-00000.h5"));
    runtime::barrier(kWorld, "checked");
    output.commit_directory(
        [](const sfs::path& staging) { eplb::test::write_file(staging / "config.json", "{}"); });
  }
  runtime::barrier(kWorld, "committed");
  CHECK(eplb::test::read_file(out / "config.json") == "{}");
  CHECK_FALSE(sfs::exists(eplb::fs::lock_path_for(out)));
}

TEST_CASE("job: the shared-directory check passes where every rank sees rank 0's file") {
  World w;
  SharedTempDir dir;
  CHECK_NOTHROW(job::check_directories_seen(kWorld,
                                            {{dir.path(), "output's parent directory", false}},
                                            {"host0", "host" + std::to_string(w.rank)}));
  runtime::barrier(kWorld, "checked");
  CHECK(sfs::is_empty(dir.path()));  // rank 0 removed its check file
}

TEST_CASE("job: a directory private to a host stops every rank, naming both hosts") {
  World w;
  SharedTempDir shared;
  // Ranks other than 0 look in a directory of their own, as a host with its own /tmp.
  eplb::test::TempDir own;
  const sfs::path seen = w.rank == 0 ? shared.path() : own.path();
  ErrorKind kind = ErrorKind::kInternal;
  const size_t printed_before = core::log::printed_errors().size();
  const std::string text = eplb::test::error_text(
      [&] {
        job::check_directories_seen(kWorld, {{seen, "output's parent directory", false}},
                                    {"host0", "host" + std::to_string(w.rank)});
      },
      &kind);
  if (w.size == 1) {
    CHECK(text == "no error");
    return;
  }
  CHECK(kind == ErrorKind::kIo);
  // Each rank that does not see the file says so itself, naming both hosts; rank 0 sees it.
  const auto printed = core::log::printed_errors();
  const std::vector<std::string> mine(printed.begin() + static_cast<long>(printed_before),
                                      printed.end());
  if (w.rank == 0) {
    CHECK(mine.empty());
  } else {
    REQUIRE(mine.size() == 1);
    CHECK_THAT(mine.front(),
               Catch::StartsWith("output's parent directory '" + own.path().string() +
                                 "' is not shared with rank 0's host host0: this host (host" +
                                 std::to_string(w.rank) + ") does not see rank 0's check file"));
  }
  runtime::barrier(kWorld, "refused");
  CHECK(sfs::is_empty(shared.path()));  // no check file left
  CHECK(sfs::is_empty(own.path()));
}
