// Copy records of the in-place journal (eplb/io/journal.hpp, docs/FORMAT.md): a changed row
// rolled forward from a stable slot instead of journaled. Recovery leaves a destination that
// already holds its bytes alone, repairs a torn one from its source, refuses a source whose
// xxh3 does not match (naming both, writing nothing more); journals of version 1 (patches
// only) are still rolled forward.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/io/journal.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/tensor.hpp"
#include "journal_test_util.hpp"

namespace eplb::io {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

using test::bytes_of;
uint64_t xxh3_of(const std::string& s) { return checksum(bytes_of(s)); }

std::string new_manifest() { return test::two_shard_manifest(std::string(32, 'c')); }

// Two 16-byte "shards". Rank 0's row at 4..8 becomes "89ab", which lies intact at 8..12 of
// rank 1's shard (a stable slot); its byte 0 is patched to "p". Rank 1's row at 0..4
// becomes "89ab" too, copied from its own shard.
struct Checkpoint : test::TwoShards {
  Checkpoint() : TwoShards("0123456789abcdef") {}
  void write_journals() {
    create_journal_dir(dir);
    JournalWriter j0(dir, 0, 2, "rank-00000.h5", 16);
    j0.add_patch(0, bytes_of("p"));
    j0.add_copy(4, bytes_of("89ab"), "rank-00001.h5", 8, xxh3_of("89ab"));
    j0.add_manifest(new_manifest());
    CHECK(j0.patch_bytes() == 1);
    CHECK(j0.copy_bytes() == 4);
    j0.commit();
    JournalWriter j1(dir, 1, 2, "rank-00001.h5", 16);
    j1.add_copy(0, bytes_of("89ab"), "rank-00001.h5", 8, xxh3_of("89ab"));
    j1.commit();
  }
};

constexpr const char* kNew0 = "pAAA89abAAAAAAAA";
constexpr const char* kNew1 = "89ab456789abcdef";

TEST_CASE("copy records roll forward from their source, not from the journal",
          "[io][journal][copy]") {
  Checkpoint c;
  c.write_journals();
  // The journal holds no copied bytes: "89ab" is nowhere in it.
  CHECK(test::read_file(journal_dir_for(c.dir) / "rank-00000").find("89ab") == std::string::npos);
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledForward);
  CHECK(c.shard(0) == kNew0);
  CHECK(c.shard(1) == kNew1);
  CHECK(test::read_file(c.dir / "manifest.json") == new_manifest());
  CHECK_FALSE(has_journal(c.dir));
}

TEST_CASE("a torn destination row is copied again; a written one is left alone",
          "[io][journal][copy]") {
  Checkpoint c;
  c.write_journals();
  test::write_file(c.dir / "rank-00000.h5", "AAAA89AAAAAAAAAA");  // half written
  CHECK(apply_journal(c.dir, 0) == 1 + 4);
  CHECK(c.shard(0) == kNew0);
  // Rank 1's destination is written already, and its source damaged since (as another
  // copy's would be if it were not stable): the destination is not touched, nothing read.
  test::write_file(c.dir / "rank-00001.h5", "89ab4567XXXXcdef");
  CHECK(apply_journal(c.dir, 1) == 0);
  CHECK(c.shard(1) == "89ab4567XXXXcdef");
}

TEST_CASE(
    "a source whose xxh3 does not match is refused, naming both; nothing more is "
    "written and the journal stays",
    "[io][journal][copy]") {
  Checkpoint c;
  c.write_journals();
  test::write_file(c.dir / "rank-00001.h5", "0123456789aXcdef");  // the stable slot, damaged
  try {
    recover_journal(c.dir);
    FAIL("recovery from a damaged source succeeded");
  } catch (const core::Error& e) {
    CHECK(e.kind() == core::ErrorKind::kInput);
    const std::string what = e.problems().front();
    INFO(what);
    CHECK_THAT(what,
               Catch::Contains("the 4 bytes at 8 of '" + (c.dir / "rank-00001.h5").string() +
                               "', to be copied to 4 of '" + (c.dir / "rank-00000.h5").string()));
    CHECK_THAT(what, Catch::Contains("not the expected"));
  }
  CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");  // not even rank 0's patch, which comes after
  CHECK(test::read_file(c.dir / "manifest.json") == "old manifest");
  CHECK(has_journal(c.dir));
}

TEST_CASE("a copy record whose source is too short is refused", "[io][journal][copy]") {
  Checkpoint c;
  create_journal_dir(c.dir);
  JournalWriter j0(c.dir, 0, 1, "rank-00000.h5", 16);
  j0.add_copy(4, bytes_of("89ab"), "rank-00001.h5", 14, xxh3_of("89ab"));
  j0.add_manifest(new_manifest());
  j0.commit();
  CHECK_THROWS_WITH(recover_journal(c.dir), Catch::Contains("ends before the 4 bytes at 14"));
  CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");
}

TEST_CASE("the live run writes copies from memory, and predicts the file's hash",
          "[io][journal][copy]") {
  Checkpoint c;
  std::string shard(2 * 4096 + 16, 'A');
  test::write_file(c.dir / "rank-00000.h5", shard);
  const std::string row(4096, 'r');
  create_journal_dir(c.dir);
  JournalWriter j(c.dir, 0, 1, "rank-00000.h5", shard.size());
  j.add_patch(2, bytes_of("xy"));
  j.add_copy(4096, bytes_of(row), "rank-00001.h5", 0, xxh3_of(row));  // a whole block
  j.add_copy(2 * 4096 + 4, bytes_of("cc"), "rank-00001.h5", 0, xxh3_of("cc"));
  const uint64_t predicted = j.patched_file_xxh3(c.dir / "rank-00000.h5");
  j.commit();
  j.apply(c.dir / "rank-00000.h5");
  std::string want = shard;
  want.replace(2, 2, "xy");
  want.replace(4096, row.size(), row);
  want.replace(2 * 4096 + 4, 2, "cc");
  CHECK(test::read_file(c.dir / "rank-00000.h5") == want);
  CHECK(describe_file(c.dir / "rank-00000.h5").xxh3 == predicted);
}

TEST_CASE("copy records are covered by the commit record: a changed byte rolls back",
          "[io][journal][copy]") {
  Checkpoint reference;
  reference.write_journals();
  const std::string full = test::read_file(journal_dir_for(reference.dir) / "rank-00001");
  for (size_t at = 0; at < full.size(); ++at) {
    Checkpoint c;
    c.write_journals();
    std::string damaged = full;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
    test::write_file(journal_dir_for(c.dir) / "rank-00001", damaged);
    INFO("byte " << at << " of rank 1's journal changed");
    CHECK(recover_journal(c.dir) == JournalOutcome::kRolledBack);
    CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");
    CHECK(c.shard(1) == "0123456789abcdef");
  }
}

// Rewrites a journal as version 1 (the same layout, no copy records): the version field,
// then the commit record's hash of everything before it.
void make_version_1(const fs::path& path) {
  std::string text = test::read_file(path);
  const uint32_t one = 1;
  std::memcpy(text.data() + 8, &one, 4);
  const size_t commit = text.size() - 24;
  const uint64_t hash = checksum(bytes_of(text.substr(0, commit)));
  std::memcpy(text.data() + commit + 16, &hash, 8);
  test::write_file(path, text);
}

TEST_CASE("a journal of version 1 is still rolled forward", "[io][journal][copy]") {
  Checkpoint c;
  create_journal_dir(c.dir);
  {
    JournalWriter j0(c.dir, 0, 1, "rank-00000.h5", 16);
    j0.add_patch(3, bytes_of("old"));
    j0.add_manifest(new_manifest());
    j0.commit();
  }
  const fs::path path = journal_dir_for(c.dir) / "rank-00000";
  make_version_1(path);
  REQUIRE(test::read_file(path)[8] == '\x01');
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledForward);
  CHECK(c.shard(0) == "AAAoldAAAAAAAAAA");
  CHECK(test::read_file(c.dir / "manifest.json") == new_manifest());
}

TEST_CASE("a journal of version 1 with a copy record is not rolled forward",
          "[io][journal][copy]") {
  // Version 1 knew no copy records: one there is damage, whatever the commit hash says.
  Checkpoint c;
  create_journal_dir(c.dir);
  {
    JournalWriter j0(c.dir, 0, 1, "rank-00000.h5", 16);
    j0.add_copy(4, bytes_of("89ab"), "rank-00001.h5", 8, xxh3_of("89ab"));
    j0.add_manifest(new_manifest());
    j0.commit();
  }
  make_version_1(journal_dir_for(c.dir) / "rank-00000");
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledBack);
  CHECK(c.shard(0) == "AAAAAAAAAAAAAAAA");
}

// Two waves: rank 1's row copies the old bytes of rank 0's journaled row "AAAA" at 8, which
// rank 0's patch overwrites with "ZZZZ".
void write_wave_journals(const fs::path& dir) {
  create_journal_dir(dir);
  JournalWriter j0(dir, 0, 2, "rank-00000.h5", 16);
  j0.add_patch(8, bytes_of("ZZZZ"));
  j0.add_manifest(new_manifest());
  j0.commit();
  JournalWriter j1(dir, 1, 2, "rank-00001.h5", 16);
  j1.add_copy(12, bytes_of("AAAA"), "rank-00000.h5", 8, xxh3_of("AAAA"));
  j1.commit();
}

TEST_CASE("recovery copies every journal's rows before any patch overwrites a source",
          "[io][journal][copy][waves]") {
  Checkpoint c;
  write_wave_journals(c.dir);
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledForward);
  CHECK(c.shard(0) == "AAAAAAAAZZZZAAAA");
  CHECK(c.shard(1) == "0123456789abAAAA");
}

TEST_CASE("recovery after wave 2 began: copies found written, the source already patched",
          "[io][journal][copy][waves]") {
  Checkpoint c;
  write_wave_journals(c.dir);
  test::write_file(c.dir / "rank-00001.h5", "0123456789abAAAA");  // wave 1 durable
  test::write_file(c.dir / "rank-00000.h5", "AAAAAAAAZZAAAAAA");  // wave 2 torn
  CHECK(recover_journal(c.dir) == JournalOutcome::kRolledForward);
  CHECK(c.shard(0) == "AAAAAAAAZZZZAAAA");
  CHECK(c.shard(1) == "0123456789abAAAA");
}

TEST_CASE("the live run writes copies and patches in two halves", "[io][journal][copy][waves]") {
  Checkpoint c;
  create_journal_dir(c.dir);
  JournalWriter j0(c.dir, 0, 1, "rank-00000.h5", 16);
  j0.add_patch(0, bytes_of("p"));
  j0.add_copy(4, bytes_of("89ab"), "rank-00001.h5", 8, xxh3_of("89ab"));
  j0.commit();
  j0.apply_copies(c.dir / "rank-00000.h5");
  CHECK(c.shard(0) == "AAAA89abAAAAAAAA");
  j0.apply_patches(c.dir / "rank-00000.h5");
  CHECK(c.shard(0) == kNew0);
}

}  // namespace
}  // namespace eplb::io
