// Owning an output name for one run: lock, recovery of a dead run's leftovers, staging,
// and the atomic commit of a directory (POSIX; docs/RELIABILITY.md).
//
// Local: lib/job decides which rank calls what. One process (rank 0) owns the output name
// through an OutputOwner; every process writes and fsyncs its files inside the staging
// directory; the owner commits.
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

#include "eplb/core/fd.hpp"
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

// Opens `.<name>.eplb-lock` next to `output` relative to `parent_fd` (O_NOFOLLOW, this
// user's regular file only) and flock()s it without blocking; shared by OutputOwner (a new
// output) and io::CheckpointLock (an update in place). Returns the descriptor; `previous`
// receives the text the previous owner left in it. Held by a live run: throws kUsage
// naming it. Local.
core::Fd take_lock(int parent_fd, const std::filesystem::path& output, std::string& previous);

// Ownership of an output name for one run. Construction runs four steps, each its own
// function:
//   1. lock(): locks .<name>.eplb-lock (flock, non-blocking). Held by a live run: throws
//      kUsage naming that run. Created without following a planted name (O_NOFOLLOW,
//      openat on the parent); a lock file owned by another user is refused;
//   2. recover(): removes a dead run's leftovers, with a warning each: its staging
//      directory is removed; its .eplb-old is renamed back when the output name is
//      missing, or removed when the output is a complete checkpoint;
//   3. check_output(): the output must not exist unless `force`, and --force replaces only
//      an eplb checkpoint (a directory holding manifest.json), never another file or
//      directory;
//   4. create_staging(): creates the staging directory (mkdirat, 0700).
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
  std::string lock();  // returns the previous owner, described
  void recover(const std::string& previous_owner);
  void check_output() const;
  void create_staging();
  void check_still_owned() const;
  void check_replaceable() const;  // commit: the output name, as check_output() saw it
  bool lock_still_ours() const noexcept;
  void release() noexcept;  // discard(), then unlink and release the lock; once

  std::filesystem::path output_;
  std::filesystem::path staging_;
  bool force_;
  core::Fd parent_fd_;
  core::Fd lock_fd_;
  // Held open so that the staging directory's inode cannot be reused by another run's
  // directory after ours is removed: (dev, inode) then names ours and nothing else.
  core::Fd staging_fd_;
  dev_t staging_dev_ = 0;
  ino_t staging_ino_ = 0;
  std::atomic<bool> committed_{false};
  std::atomic<bool> released_{false};
  // Declared last, so destroyed first: a signal then no longer finds a half-destroyed owner.
  std::optional<core::interrupt::Cleanup> on_signal_;
};

// True when `dir` is a directory (not a symlink) holding a regular manifest.json.
bool is_checkpoint_dir(const std::filesystem::path& dir);

// Best-effort removal, never throws (used on failure paths).
void remove_tree_noexcept(const std::filesystem::path& path) noexcept;

}  // namespace eplb::fs
