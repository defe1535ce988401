// The in-place journal (eplb/io/journal.hpp): roll forward only when every journal is
// complete; a journal cut at any byte, or with one byte changed, is rolled back and leaves
// the shards as they were.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/io/journal.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard_layout.hpp"
#include "journal_test_util.hpp"

namespace eplb::io {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

using test::bytes_of;

std::string manifest_text(const std::string& checkpoint_id) {
  return test::two_shard_manifest(checkpoint_id);
}

// Two 16-byte "shards" (the journal treats them as bytes) and an old manifest.
struct Checkpoint : test::TwoShards {
  Checkpoint() : TwoShards("BBBBBBBBBBBBBBBB") {}
  // Both ranks' journals; `commit_rank1` false leaves rank 1's without a commit record.
  void write_journals(bool commit_rank1 = true) {
    create_journal_dir(dir);
    JournalWriter j0(dir, 0, 2, "rank-00000.h5", 16);
    j0.add_patch(2, bytes_of("xy"));
    j0.add_patch(10, bytes_of("zzz"));
    j0.add_manifest(manifest_text(std::string(32, 'a')));
    j0.commit();
    JournalWriter j1(dir, 1, 2, "rank-00001.h5", 16);
    j1.add_patch(0, bytes_of("q"));
    j1.add_patch(15, bytes_of("r"));
    if (commit_rank1) j1.commit();
  }
};

}  // namespace

TEST_CASE("complete journals roll forward, idempotently", "[io][journal]") {
  Checkpoint c;
  c.write_journals();
  REQUIRE(has_journal(c.dir));
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledForward);
  CHECK(c.shard(0) == "AAxyAAAAAAzzzAAA");
  CHECK(c.shard(1) == "qBBBBBBBBBBBBBBr");
  CHECK(test::read_file(c.dir / "manifest.json") == manifest_text(std::string(32, 'a')));
  CHECK_FALSE(has_journal(c.dir));
  CHECK(recover_journal(c.dir) == JournalOutcome::kNone);
}

TEST_CASE("a journal without its commit record rolls back", "[io][journal]") {
  Checkpoint c;
  c.write_journals(/*commit_rank1=*/false);
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledBack);
  CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");
  CHECK(c.shard(1) == "BBBBBBBBBBBBBBBB");
  CHECK(test::read_file(c.dir / "manifest.json") == "old manifest");
  CHECK_FALSE(has_journal(c.dir));
}

TEST_CASE("a journal cut at any byte, or with any byte changed, rolls back", "[io][journal]") {
  Checkpoint reference;
  reference.write_journals();
  const fs::path rank1 = journal_dir_for(reference.dir) / "rank-00001";
  const std::string full = test::read_file(rank1);
  REQUIRE(full.size() > 24);
  for (size_t size = 0; size < full.size(); ++size) {
    Checkpoint c;
    c.write_journals();
    test::write_file(journal_dir_for(c.dir) / "rank-00001", full.substr(0, size));
    INFO("rank 1's journal cut to " << size << " of " << full.size() << " bytes");
    CHECK(recover_journal(c.dir) == JournalOutcome::kRolledBack);
    CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");
    CHECK(c.shard(1) == "BBBBBBBBBBBBBBBB");
  }
  for (size_t at = 0; at < full.size(); ++at) {
    Checkpoint c;
    c.write_journals();
    std::string damaged = full;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
    test::write_file(journal_dir_for(c.dir) / "rank-00001", damaged);
    INFO("byte " << at << " of rank 1's journal changed");
    // A changed EP rank or journal count is caught as a disagreement, anything else by the
    // commit record's hash: never a roll forward of bytes nobody committed.
    CHECK(recover_journal(c.dir) == JournalOutcome::kRolledBack);
    CHECK(c.shard(1) == "BBBBBBBBBBBBBBBB");
  }
}

TEST_CASE("a missing rank's journal rolls back", "[io][journal]") {
  Checkpoint c;
  c.write_journals();
  fs::remove(journal_dir_for(c.dir) / "rank-00001");
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledBack);
  CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");
}

TEST_CASE("a shard whose size changed is refused, the journal kept", "[io][journal]") {
  Checkpoint c;
  c.write_journals();
  test::write_file(c.dir / "rank-00001.h5", "short");
  CHECK_THROWS_AS(recover_journal(c.dir), core::Error);
  CHECK(has_journal(c.dir));
}

TEST_CASE("the patched file's hash is the hash of the file once patched", "[io][journal]") {
  Checkpoint c;
  create_journal_dir(c.dir);
  JournalWriter j(c.dir, 0, 1, "rank-00000.h5", 16);
  j.add_patch(12, bytes_of("9"));
  j.add_patch(0, bytes_of("12"));
  const uint64_t predicted = j.patched_file_xxh3(c.dir / "rank-00000.h5");
  j.commit();
  j.apply(c.dir / "rank-00000.h5");
  CHECK(c.shard(0) == "12AAAAAAAAAA9AAA");
  CHECK(describe_file(c.dir / "rank-00000.h5").xxh3 == predicted);
}

TEST_CASE("whole blocks (O_DIRECT where allowed) and small patches land byte for byte",
          "[io][journal]") {
  Checkpoint c;
  std::string shard(3 * 4096 + 100, 'A');
  test::write_file(c.dir / "rank-00000.h5", shard);
  const std::string block1(4096, 'b'), block2(4096, 'c');
  create_journal_dir(c.dir);
  JournalWriter j(c.dir, 0, 1, "rank-00000.h5", shard.size());
  j.add_patch(10, bytes_of("xy"));           // small, inside block 0
  j.add_patch(4096, bytes_of(block1));       // one whole block
  j.add_patch(8192, bytes_of(block2));       // the last whole block
  j.add_patch(3 * 4096 + 7, bytes_of("z"));  // in the tail, past the last whole block
  j.commit();
  std::string want = shard;
  want.replace(10, 2, "xy");
  want.replace(4096, block1.size(), block1);
  want.replace(8192, block2.size(), block2);
  want.replace(3 * 4096 + 7, 1, "z");
  j.apply(c.dir / "rank-00000.h5");
  CHECK(test::read_file(c.dir / "rank-00000.h5") == want);
  j.apply(c.dir / "rank-00000.h5");  // idempotent
  CHECK(test::read_file(c.dir / "rank-00000.h5") == want);
}

TEST_CASE("RowFile reads aligned ranges (O_DIRECT where allowed) and others alike",
          "[io][journal]") {
  TempDir tmp;
  std::string text(5 * 4096, '\0');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + i % 23);
  test::write_file(tmp / "f", text);
  const RowFile file(tmp / "f");
  auto* aligned = static_cast<std::byte*>(std::aligned_alloc(4096, 2 * 4096));
  REQUIRE(aligned != nullptr);
  file.read(4096, {aligned, 2 * 4096});  // aligned offset, size and memory
  CHECK(std::memcmp(aligned, text.data() + 4096, 2 * 4096) == 0);
  file.read(3 * 4096, {aligned + 1, 100});  // unaligned memory and size
  CHECK(std::memcmp(aligned + 1, text.data() + 3 * 4096, 100) == 0);
  file.read(4 * 4096, {aligned, 4096});  // the last block again, after a buffered read
  CHECK(std::memcmp(aligned, text.data() + 4 * 4096, 4096) == 0);
  CHECK_THROWS_AS(file.read(4 * 4096, {aligned, 2 * 4096}), core::Error);  // past the end
  std::free(aligned);
}

TEST_CASE("the checkpoint lock excludes a second holder", "[io][journal]") {
  Checkpoint c;
  {
    CheckpointLock first(c.dir);
    CHECK_THROWS_WITH(CheckpointLock(c.dir), Catch::Contains("is being written by another run"));
  }
  CheckpointLock again(c.dir);  // released by the first's destructor
}

TEST_CASE("the journal directory is not created through a planted name", "[io][journal]") {
  Checkpoint c;
  fs::create_directories(c.tmp / "elsewhere");
  fs::create_directory_symlink(c.tmp / "elsewhere", journal_dir_for(c.dir));
  CHECK_THROWS_AS(create_journal_dir(c.dir), core::Error);
  CHECK_THROWS_WITH(recover_journal(c.dir), Catch::Contains("is not a directory"));
  CHECK(fs::is_empty(c.tmp / "elsewhere"));
}

}  // namespace eplb::io
