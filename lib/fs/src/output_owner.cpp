// Ownership of an output name: the four steps of taking it, the commit and the release
// (eplb/fs/output_owner.hpp).
#include "eplb/fs/output_owner.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "eplb/core/error.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/durable.hpp"
#include "owner_detail.hpp"
#include "path_names.hpp"

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;
using core::quoted;
using detail::cannot_create;
using detail::kind_of;
using detail::same_file;
using detail::stat_at;

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw Error(ErrorKind::kIo, what + ": " + std::strerror(err));
}

void rename_or_throw(const sfs::path& from, const sfs::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw_errno("cannot rename " + quoted(from) + " to " + quoted(to), errno);
  }
}

void remove_or_throw(const sfs::path& path) {
  std::error_code ec;
  sfs::remove_all(path, ec);
  if (ec) throw Error(ErrorKind::kIo, "cannot remove " + quoted(path) + ": " + ec.message());
}

// The parent directory, opened; reports a missing parent or one that is a file plainly.
core::Fd open_parent(const sfs::path& output) {
  const sfs::path parent = detail::parent_dir(output);
  core::Fd fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.empty()) return fd;
  const int err = errno;
  struct stat st {};
  if (err == ENOTDIR && ::stat(parent.c_str(), &st) == 0) {
    cannot_create(output, quoted(parent) + " is " + kind_of(st.st_mode) + ", not a directory");
  }
  if (err == ENOTDIR)
    cannot_create(output, "a parent of " + quoted(parent) + " is not a directory");
  if (err == ENOENT) cannot_create(output, "directory " + quoted(parent) + " does not exist");
  cannot_create(output, "cannot open directory " + quoted(parent) + ": " + std::strerror(err));
}

// A leftover we may touch: a directory (not a symlink someone planted) owned by us.
void check_ours(const sfs::path& path, const struct stat& st) {
  if (!S_ISDIR(st.st_mode)) {
    throw Error(ErrorKind::kUsage, quoted(path) + " is " + kind_of(st.st_mode) +
                                       ", not a directory eplb-rebalance made: remove it by hand");
  }
  if (st.st_uid != ::geteuid()) {
    throw Error(ErrorKind::kUsage, quoted(path) + " belongs to user id " +
                                       std::to_string(st.st_uid) +
                                       ", not to this user: it is not ours to remove");
  }
}

}  // namespace

OutputOwner::OutputOwner(sfs::path output, bool force)
    : output_(detail::normalized(output)),
      staging_(staging_path_for(output_)),
      force_(force),
      parent_fd_(open_parent(output_)) {
  try {
    const std::string previous_owner = lock();
    // We hold the lock, so whoever left leftovers is gone.
    recover(previous_owner);
    check_output();
    create_staging();
    on_signal_.emplace([this] { release(); });
    core::fault::kill_point("staging");
  } catch (...) {
    // Our lock file stays for the next run unless we made it ours; unlinking is safe only
    // while holding the lock (the members close the descriptors).
    if (!lock_fd_.empty())
      ::unlinkat(parent_fd_.get(), lock_path_for(output_).filename().c_str(), 0);
    throw;
  }
}

// Step 1: the lock, with this run's description written into it.
std::string OutputOwner::lock() {
  std::string previous;
  lock_fd_ = take_lock(parent_fd_.get(), output_, previous);
  const std::string text = OwnerInfo::current().to_text();
  if (::ftruncate(lock_fd_.get(), 0) != 0 ||
      ::pwrite(lock_fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    throw_errno("cannot write lock file " + quoted(lock_path_for(output_)), errno);
  }
  return OwnerInfo::from_text(previous).describe();
}

// Step 2: a dead run's staging directory goes; its .eplb-old comes back or goes.
void OutputOwner::recover(const std::string& who) {
  if (auto st = stat_at(parent_fd_.get(), staging_.filename())) {
    check_ours(staging_, *st);
    remove_or_throw(staging_);
    core::log::warn("removed {}, the staging directory of a run that did not finish ({})",
                    quoted(staging_), who);
  }
  const sfs::path old = old_path_for(output_);
  const auto st = stat_at(parent_fd_.get(), old.filename());
  if (!st) return;
  check_ours(old, *st);
  if (!stat_at(parent_fd_.get(), output_.filename())) {
    rename_or_throw(old, output_);
    fsync_path(detail::parent_dir(output_));
    core::log::warn(
        "restored the previous output {} from {}: a run with --force ({}) died between "
        "its two renames",
        quoted(output_), quoted(old), who);
  } else if (is_checkpoint_dir(output_)) {
    remove_or_throw(old);
    core::log::warn(
        "removed {}, the previous output replaced by a run that did not finish its clean-up "
        "({})",
        quoted(old), who);
  } else {
    throw Error(ErrorKind::kUsage, "both " + quoted(output_) + " and " + quoted(old) +
                                       " exist and the first is not a complete checkpoint: "
                                       "check them and remove one by hand");
  }
}

// Step 3: the output is absent, or --force and one of our checkpoints.
void OutputOwner::check_output() const {
  const auto st = stat_at(parent_fd_.get(), output_.filename());
  if (!st) return;
  if (!force_) {
    throw Error(ErrorKind::kUsage,
                "output " + quoted(output_) + " already exists; pass --force to replace it");
  }
  if (!is_checkpoint_dir(output_)) {
    cannot_create(output_, "it exists and is " +
                               (S_ISDIR(st->st_mode)
                                    ? std::string("a directory without manifest.json, not an eplb "
                                                  "checkpoint")
                                    : kind_of(st->st_mode)) +
                               "; --force replaces only an eplb checkpoint: remove it by hand");
  }
}

// Step 4: the staging directory, held open (its device and inode name it from now on).
void OutputOwner::create_staging() {
  const std::string name = staging_.filename();
  if (::mkdirat(parent_fd_.get(), name.c_str(), 0700) != 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM || err == EROFS) {
      cannot_create(output_, "cannot create " + quoted(staging_) + ": " + std::strerror(err));
    }
    throw_errno("cannot create staging directory " + quoted(staging_), err);
  }
  staging_fd_ = core::Fd(
      ::openat(parent_fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (staging_fd_.empty() || ::fstat(staging_fd_.get(), &st) != 0) {
    throw Error(ErrorKind::kIo, "staging directory " + quoted(staging_) + " vanished");
  }
  staging_dev_ = st.st_dev;
  staging_ino_ = st.st_ino;
}

bool OutputOwner::lock_still_ours() const noexcept {
  struct stat mine {
  }, now{};
  const std::string lock_name = lock_path_for(output_).filename();
  return ::fstat(lock_fd_.get(), &mine) == 0 &&
         ::fstatat(parent_fd_.get(), lock_name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
         same_file(mine, now);
}

void OutputOwner::check_still_owned() const {
  const auto staging = stat_at(parent_fd_.get(), staging_.filename());
  if (!lock_still_ours() || !staging || staging->st_dev != staging_dev_ ||
      staging->st_ino != staging_ino_) {
    throw Error(ErrorKind::kIo, "this run no longer owns " + quoted(staging_) +
                                    ": it or the lock file " + quoted(lock_path_for(output_)) +
                                    " was removed or replaced while the run was writing; "
                                    "nothing was committed");
  }
}

void OutputOwner::check_replaceable() const {
  if (!stat_at(parent_fd_.get(), output_.filename())) return;
  if (!force_) {
    throw Error(ErrorKind::kUsage,
                "output " + quoted(output_) + " already exists; pass --force to replace it");
  }
  if (!is_checkpoint_dir(output_)) {
    cannot_create(output_, "it appeared during the run and is not an eplb checkpoint");
  }
}

void OutputOwner::commit(const OutputModes& modes) {
  core::fault::kill_point("manifest");
  check_still_owned();
  std::error_code ec;
  for (sfs::directory_iterator it(staging_, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file() && ::chmod(it->path().c_str(), modes.file) != 0) {
      throw_errno("cannot set the mode of " + quoted(it->path()), errno);
    }
  }
  if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(staging_) + ": " + ec.message());
  // Everything durable before the rename makes it visible.
  fsync_tree(staging_);
  check_replaceable();
  const sfs::path old = old_path_for(output_);
  const bool replace = stat_at(parent_fd_.get(), output_.filename()).has_value();
  // NOTE: no commit after SIGINT/SIGTERM; a signal arriving now waits for the renames.
  const auto no_signal = core::interrupt::critical_section();
  check_still_owned();
  if (::chmod(staging_.c_str(), modes.dir) != 0) {
    throw_errno("cannot set the mode of " + quoted(staging_), errno);
  }
  if (replace) {
    rename_or_throw(output_, old);
    core::fault::kill_point("renamed-old");
  }
  if (std::rename(staging_.c_str(), output_.c_str()) != 0) {
    const int err = errno;
    if (replace) std::rename(old.c_str(), output_.c_str());  // put the user's output back
    throw_errno("cannot rename " + quoted(staging_) + " to " + quoted(output_), err);
  }
  committed_ = true;
  core::fault::kill_point("committed");
  fsync_path(detail::parent_dir(output_));
  if (!replace) return;
  // The commit has happened; a leftover old copy is worth a warning, not a failure (the
  // next run on this name removes it).
  sfs::remove_all(old, ec);
  if (ec) {
    core::log::warn("could not remove the previous output, now at {}: {}", quoted(old),
                    ec.message());
  }
}

void OutputOwner::discard() noexcept {
  // Only while the lock at the name is still ours: a run that took the name after ours was
  // removed owns whatever staging directory is there now.
  if (committed_ || parent_fd_.empty() || lock_fd_.empty() || !lock_still_ours()) return;
  struct stat st {};
  if (::fstatat(parent_fd_.get(), staging_.filename().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      st.st_dev == staging_dev_ && st.st_ino == staging_ino_) {
    remove_tree_noexcept(staging_);
  }
}

OutputOwner::~OutputOwner() {
  on_signal_.reset();
  release();
}

void OutputOwner::release() noexcept {
  if (released_.exchange(true)) return;
  discard();
  // Unlink while still holding the lock: a run waiting on this file then sees it is gone.
  // The descriptors close with their owners (or with the process, after a signal).
  if (!lock_fd_.empty() && lock_still_ours()) {
    ::unlinkat(parent_fd_.get(), lock_path_for(output_).filename().c_str(), 0);
  }
}

}  // namespace eplb::fs
