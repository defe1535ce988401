// Atomic, owned publication of a checkpoint directory (POSIX; docs/RELIABILITY.md).
//
// Local: the engine decides which rank calls what. One process (rank 0) owns the output
// name through an OutputOwner; every process writes and fsyncs its shards inside the
// staging directory; the owner commits.
//
// Names next to the output "<parent>/<name>" (same filesystem, so rename() is atomic):
//   .<name>.eplb-lock     the lock file: flock()ed by the owning run for its whole life and
//                         holding the owner's host, pid, job id and start time;
//   .<name>.eplb-staging  where the new checkpoint is written (mode 0700 until commit);
//   .<name>.eplb-old      the replaced output, between the two renames of a --force commit.
// The lock sits next to the staging directory rather than inside it because it must also
// cover .eplb-old and the renames of the commit, when the staging directory has moved.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "eplb/core/interrupt.hpp"

namespace eplb::fs {

// "<parent>/.<name>.eplb-staging", "<parent>/.<name>.eplb-old", "<parent>/.<name>.eplb-lock".
std::filesystem::path staging_path_for(const std::filesystem::path& output);
std::filesystem::path old_path_for(const std::filesystem::path& output);
std::filesystem::path lock_path_for(const std::filesystem::path& output);

// Who holds an output name. Written into the lock file; shown to a run that finds it busy.
struct OwnerInfo {
  std::string host;
  long pid = 0;
  std::string job_id;   // SLURM_JOB_ID, PBS_JOBID, LSB_JOBID or FLUX_JOB_ID; may be empty
  std::string started;  // UTC, ISO 8601
  static OwnerInfo current();
  std::string to_text() const;                          // "host=..\npid=..\n..."
  static OwnerInfo from_text(const std::string& text);  // tolerant: missing fields stay empty
  // "host node07, pid 1234, job 5678, started 2026-11-28T12:00:00Z"
  std::string describe() const;
};

// File modes for a committed checkpoint: the input's, never wider than it or the umask.
struct OutputModes {
  mode_t dir = 0;
  mode_t file = 0;
  // The modes of `input_dir` and its manifest, each restricted by the umask; without an
  // input (or if it cannot be examined), 0777 & ~umask and 0666 & ~umask.
  static OutputModes like(const std::optional<std::filesystem::path>& input_dir);
};

// Ownership of an output name for one run. Construction:
//   1. locks .<name>.eplb-lock (flock, non-blocking). Held by a live run: throws kUsage
//      naming that run. Created without following a planted name (O_NOFOLLOW, openat on
//      the parent); a lock file owned by another user is refused;
//   2. recovers a dead run's leftovers, with a warning each: its staging directory is
//      removed; its .eplb-old is renamed back when the output name is missing, or removed
//      when the output is a complete checkpoint;
//   3. checks the output: it must not exist unless `force`, and --force replaces only an
//      eplb checkpoint (a directory holding manifest.json), never another file or directory;
//   4. creates the staging directory (mkdirat, 0700).
// Problems with the output location ("cannot create output ...") are kUsage; failures of
// the filesystem while creating are kIo.
class OutputOwner {
 public:
  OutputOwner(std::filesystem::path output, bool force);
  // Removes the staging directory unless committed (only if it is still the one this run
  // created), then unlinks and releases the lock. Never throws.
  ~OutputOwner();
  OutputOwner(const OutputOwner&) = delete;
  OutputOwner& operator=(const OutputOwner&) = delete;
  OutputOwner(OutputOwner&&) = delete;
  OutputOwner& operator=(OutputOwner&&) = delete;

  const std::filesystem::path& output() const { return output_; }
  const std::filesystem::path& staging() const { return staging_; }

  // Sets the modes, fsyncs the staging tree and renames it into place (moving a replaced
  // output aside first and removing it after). Refuses with kIo, committing nothing, when
  // the staging directory or the lock file is no longer the one this run created (someone
  // removed them while the run was writing).
  void commit(const OutputModes& modes);

  // Removes the staging directory now if it is still ours. Never throws.
  void discard() noexcept;

 private:
  void check_still_owned() const;
  void release() noexcept;  // discard(), then unlink and release the lock; once
  std::filesystem::path output_;
  std::filesystem::path staging_;
  bool force_;
  int parent_fd_ = -1;
  int lock_fd_ = -1;
  // Held open so that the staging directory's inode cannot be reused by another run's
  // directory after ours is removed: (dev, inode) then names ours and nothing else.
  int staging_fd_ = -1;
  dev_t staging_dev_ = 0;
  ino_t staging_ino_ = 0;
  std::atomic<bool> committed_{false};
  std::atomic<bool> released_{false};
  // Declared last, so destroyed first: a signal then no longer finds a half-destroyed owner.
  std::optional<core::interrupt::Cleanup> on_signal_;
};

void fsync_path(const std::filesystem::path& path);  // file or directory; throws kIo
// Writes `content` to `path` through a new temporary file (O_EXCL|O_NOFOLLOW), fsync and
// rename.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);
// Removes the temporary files that write_file_atomic(path, ...) calls of dead processes
// left next to `path` (".<name>.tmp.<pid>.<n>"); returns how many. Call only where no live
// process can be writing `path` (under the checkpoint's lock). Throws kIo.
int remove_stale_temporaries(const std::filesystem::path& path);

// What the filesystem holding `path` has free for unprivileged writers (statvfs: f_bavail
// blocks of f_frsize bytes), or nullopt where it does not say: statvfs fails, or reports no
// blocks at all (some FUSE and network filesystems).
std::optional<uint64_t> free_bytes(const std::filesystem::path& path);

// Refuses, before anything is written, a job that cannot fit: throws kIo when `bytes` (at
// least what the caller is about to write under `dir`) exceed free_bytes(dir), naming
// `what`, both figures, the directory and `remedy`. Does nothing where the filesystem does
// not say; a quota below the free space is still found by the writes themselves (EDQUOT).
void require_free_space(const std::filesystem::path& dir, uint64_t bytes, std::string_view what,
                        std::string_view remedy = "make room or choose another directory");

// True when `dir` is a directory (not a symlink) holding a regular manifest.json.
bool is_checkpoint_dir(const std::filesystem::path& dir);

// Best-effort removal, never throws (used on failure paths).
void remove_tree_noexcept(const std::filesystem::path& path) noexcept;

}  // namespace eplb::fs
