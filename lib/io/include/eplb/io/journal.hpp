// The journal of an in-place update (`run --in-place`, docs/FORMAT.md "The in-place
// journal", docs/RELIABILITY.md). POSIX; local: the engine decides which rank calls what.
//
// An in-place update overwrites only the rows whose logical expert changes. So that a crash
// at any moment leaves a checkpoint that is either the old one or the new one, every byte
// it will overwrite is first written, with the new manifest, to a journal inside the
// checkpoint, one file per EP rank:
//
//   CKPT/.eplb-journal/rank-NNNNN   header, patch records (file offset + new bytes), copy
//                                   records (a row to copy from a stable slot of a shard,
//                                   with its expected xxh3), for rank 0 also the new
//                                   manifest, then a commit record holding the xxh3 of
//                                   everything before it.
//
// A copy record stands for a changed row whose new bytes stay intact in the checkpoint (a
// stable slot, never overwritten by the update, eplb/plan/in_place_sources.hpp): the live
// run keeps the bytes in memory and writes them; recovery copies them from the source after
// checking their xxh3.
//
// No byte of a shard is overwritten before every rank's journal is committed (fsynced, with
// its commit record) and the ranks have agreed on it. A run that finds a journal (under
// the checkpoint's lock) rolls it forward when every rank's journal is complete (patches
// are idempotent: applying them again is harmless), and rolls it back (removes it) when one
// is not: then nothing was overwritten yet.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace eplb::io {

inline constexpr const char* kJournalDirName = ".eplb-journal";

// "CKPT/.eplb-journal"
std::filesystem::path journal_dir_for(const std::filesystem::path& checkpoint);
// "rank-00003"
std::string journal_file_name(int32_t ep_rank);
// True when the checkpoint holds a journal directory (an update in place is running, or one
// was interrupted). Never throws.
bool has_journal(const std::filesystem::path& checkpoint) noexcept;

// Exclusive ownership of a checkpoint for an update in place: the lock io::OutputOwner
// takes for an output name (.<name>.eplb-lock next to the checkpoint, flock held for the
// object's life), so an in-place update excludes another one and a run writing an output of
// that name. Held by a live run: throws kUsage naming it. Local.
class CheckpointLock {
 public:
  explicit CheckpointLock(const std::filesystem::path& checkpoint);
  // Unlinks the lock file (while still holding it) and releases it. Never throws.
  ~CheckpointLock();
  CheckpointLock(const CheckpointLock&) = delete;
  CheckpointLock& operator=(const CheckpointLock&) = delete;
  CheckpointLock(CheckpointLock&&) = delete;
  CheckpointLock& operator=(CheckpointLock&&) = delete;

 private:
  std::filesystem::path checkpoint_;
  int parent_fd_ = -1;
  int lock_fd_ = -1;
};

// Creates CKPT/.eplb-journal (mkdirat, 0700; it must not exist) and fsyncs the checkpoint
// directory. Throws kIo. Call with the CheckpointLock held.
void create_journal_dir(const std::filesystem::path& checkpoint);
// Removes the journal directory and everything in it, then fsyncs the checkpoint directory.
// Throws kIo. Call with the CheckpointLock held.
void remove_journal_dir(const std::filesystem::path& checkpoint);

// One EP rank's journal, written sequentially. Local.
class JournalWriter {
 public:
  // Creates CKPT/.eplb-journal/rank-NNNNN (openat on the journal directory, O_EXCL,
  // O_NOFOLLOW) for the shard `shard_name` of `shard_size` bytes. `num_journals`: how many
  // journals (EP ranks) the update has; recovery rolls forward only when all are complete.
  JournalWriter(const std::filesystem::path& checkpoint, int32_t ep_rank, int32_t num_journals,
                const std::string& shard_name, uint64_t shard_size);
  ~JournalWriter();  // closes; the file stays (removal is the owner's decision)
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  // `bytes` will be written at `offset` of the shard. Patches must not overlap and must lie
  // within the shard.
  void add_patch(uint64_t offset, std::span<const std::byte> bytes);
  // `bytes` will be written at `offset` of the shard, and lie intact, until then, at
  // `source_offset` of the checkpoint's shard `source_shard` (a plain file name) with XXH3-64
  // `xxh3`: only that (a copy record) goes to the journal; the bytes are kept in memory for
  // apply(). Must not overlap a patch or another copy.
  void add_copy(uint64_t offset, std::span<const std::byte> bytes, const std::string& source_shard,
                uint64_t source_offset, uint64_t xxh3);
  // Reserves memory for `bytes` of add_copy() rows at once (huge pages where the kernel
  // allows: a row at a time costs a page fault per 4 KiB). Optional; call before add_copy.
  void reserve_copies(uint64_t bytes);
  // The new manifest.json (rank 0's journal only).
  void add_manifest(const std::string& text);
  // XXH3-64 of the whole shard as it will be once the patches and copies are applied:
  // streams the shard, substituting the patched and copied ranges (reads the whole file).
  uint64_t patched_file_xxh3(const std::filesystem::path& shard) const;
  // Starts writing back what was appended so far (sync_file_range), so that commit()'s
  // fsync finds little left to do. Call after each layer.
  void start_writeback();
  // Appends the commit record, fsyncs the file and the journal directory. After this the
  // journal rolls forward unless another rank's is incomplete.
  void commit();

  // After commit(): writes every copy (from memory), then every patch (its bytes read back
  // from this journal, usually still in the page cache) to `shard` and fsyncs it.
  // apply_copies() and apply_patches() do each half (each fsyncs): with copies whose source
  // is a journaled row, every rank's copies must be durable before any rank's patches. What
  // recovery does with a journal read from disk, without re-validating the one this process just
  // wrote. Throws kIo, or kInput when the shard's size is not the one the journal was written for.
  void apply(const std::filesystem::path& shard) const;
  void apply_copies(const std::filesystem::path& shard) const;
  void apply_patches(const std::filesystem::path& shard) const;

  uint64_t patch_bytes() const { return patch_bytes_; }
  uint64_t copy_bytes() const { return copy_bytes_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void overwrite(const std::filesystem::path& shard, bool copies, bool patches) const;
  void append(const void* data, size_t size);
  void append_record(uint32_t kind, uint64_t offset, std::span<const std::byte> payload);
  struct Patch {
    uint64_t offset;
    uint64_t length;
    uint64_t journal_pos;  // where its bytes are in the journal
  };
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t shard_size_ = 0;
  uint64_t pos_ = 0;
  uint64_t num_records_ = 0;
  uint64_t patch_bytes_ = 0;
  std::vector<Patch> patches_;
  struct Copy {
    uint64_t offset;
    uint64_t length;
    const std::byte* bytes;  // 4 KiB-aligned, for O_DIRECT: in arena_ or owned_
  };
  std::vector<Copy> copies_;
  std::byte* arena_ = nullptr;  // mmap'ed by reserve_copies()
  size_t arena_size_ = 0;
  size_t arena_used_ = 0;
  std::vector<std::unique_ptr<std::byte, void (*)(void*)>> owned_;
  uint64_t copy_bytes_ = 0;
  void* hash_state_ = nullptr;  // XXH3_state_t*
  bool committed_ = false;
};

// Applies this rank's committed journal (re-read and validated: header, every record, the
// commit record's xxh3) to its shard with pwrite, then fsyncs the shard: copies first (a
// destination that already has its expected xxh3 is left alone; a source that does not have
// it is a kInput error naming both, and nothing more is written), then patches. Returns the
// number of patched and copied bytes. Throws kIo (cannot read or write), kInput (the journal
// is not complete, the shard's size is not the one it was written for, a copy's source does
// not match). Idempotent. One journal alone: a copy whose source is another shard's
// journaled row needs recover_journal, which applies every journal's copies first.
uint64_t apply_journal(const std::filesystem::path& checkpoint, int32_t ep_rank);

// Replaces CKPT/manifest.json atomically (io::write_file_atomic) with `text`, keeping the
// previous manifest's mode. Throws kIo.
void replace_manifest(const std::filesystem::path& checkpoint, const std::string& text);

enum class JournalOutcome { kNone, kRolledForward, kRolledBack };

// Finishes an interrupted update in place of `checkpoint`, if its journal directory exists:
// rolls forward (every journal's copy records, each shard fsynced, then every journal's
// patches, then the new manifest atomically) when all journals are complete, else rolls back; then
// removes the journal and says what it did with a warning. Call with the CheckpointLock held.
// Throws kIo / kInput naming the file.
JournalOutcome recover_journal(const std::filesystem::path& checkpoint);

}  // namespace eplb::io
