#include "eplb/fs/atomic_dir.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string_view>

#include "eplb/core/error.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/progress.hpp"
#include "eplb/fs/lock.hpp"

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;

std::string quoted(const sfs::path& path) { return "'" + path.string() + "'"; }

// "out/" names the directory "out": drop the empty last component.
sfs::path normalized(const sfs::path& path) {
  sfs::path p = path.lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

// "<parent>/.<name><suffix>", a sibling of `output`.
sfs::path sibling(const sfs::path& output, const std::string& suffix) {
  const sfs::path p = normalized(output);
  return p.parent_path() / ("." + p.filename().string() + suffix);
}

sfs::path parent_dir(const sfs::path& path) {
  const sfs::path parent = normalized(path).parent_path();
  return parent.empty() ? sfs::path(".") : parent;
}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw Error(ErrorKind::kIo, what + ": " + std::strerror(err));
}

void rename_or_throw(const sfs::path& from, const sfs::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw_errno("cannot rename " + quoted(from) + " to " + quoted(to), errno);
  }
}

void write_all(int fd, const std::string& content, const sfs::path& path) {
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot write " + quoted(path), errno);
    done += static_cast<size_t>(n);
  }
}

// Writes and fsyncs `content` to a new file `tmp`; removes it on failure.
void write_new_file(const sfs::path& tmp, const std::string& content) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) throw_errno("cannot create " + quoted(tmp), errno);
  try {
    write_all(fd, content, tmp);
    if (::fsync(fd) != 0) throw_errno("cannot fsync " + quoted(tmp), errno);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // close() can report a deferred write error (NFS): it counts.
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_errno("cannot close " + quoted(tmp), err);
  }
}

void fsync_tree(const sfs::path& root) {
  std::error_code ec;
  sfs::recursive_directory_iterator it(root, ec), end;
  if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(root) + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(root) + ": " + ec.message());
    if (it->is_regular_file() || it->is_directory()) fsync_path(it->path());
  }
  fsync_path(root);
}

}  // namespace

sfs::path staging_path_for(const sfs::path& output) { return sibling(output, ".eplb-staging"); }
sfs::path old_path_for(const sfs::path& output) { return sibling(output, ".eplb-old"); }
sfs::path lock_path_for(const sfs::path& output) { return sibling(output, ".eplb-lock"); }

OwnerInfo OwnerInfo::current() {
  OwnerInfo info;
  char host[256] = {};
  info.host = ::gethostname(host, sizeof(host) - 1) == 0 ? host : "unknown";
  info.pid = static_cast<long>(::getpid());
  for (const char* name : {"SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') {
      info.job_id = value;
      break;
    }
  }
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char when[32] = {};
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &utc);
  info.started = when;
  return info;
}

std::string OwnerInfo::to_text() const {
  return "host=" + host + "\npid=" + std::to_string(pid) + "\njob=" + job_id +
         "\nstarted=" + started + "\n";
}

OwnerInfo OwnerInfo::from_text(const std::string& text) {
  OwnerInfo info;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const size_t eq = line.find('=');
    if (eq != std::string::npos) {
      const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
      if (key == "host") info.host = value;
      if (key == "pid") info.pid = std::strtol(value.c_str(), nullptr, 10);
      if (key == "job") info.job_id = value;
      if (key == "started") info.started = value;
    }
    start = end + 1;
  }
  return info;
}

std::string OwnerInfo::describe() const {
  if (host.empty() && pid == 0) return "owner unknown";
  std::string out = "host " + host + ", pid " + std::to_string(pid);
  if (!job_id.empty()) out += ", job " + job_id;
  if (!started.empty()) out += ", started " + started;
  return out;
}

namespace {

// The process's umask, read without changing it: from /proc/self/status ("Umask:", Linux
// 4.7 and later). umask(2) can only read it by setting it, and between that call and the
// one that restores it, a file another thread creates gets mode 0666 or 0777: a window in
// which the promise "never wider than the umask" breaks. The fallback, for kernels
// without the field, is that read-and-restore.
mode_t current_umask() {
  if (std::FILE* status = std::fopen("/proc/self/status", "re")) {
    char line[256];
    unsigned long mask = 0;
    bool found = false;
    while (!found && std::fgets(line, sizeof(line), status) != nullptr) {
      found = std::sscanf(line, "Umask: %lo", &mask) == 1;
    }
    std::fclose(status);
    if (found) return static_cast<mode_t>(mask & 0777);
  }
  const mode_t mask = ::umask(0);
  ::umask(mask);
  return mask;
}

}  // namespace

OutputModes OutputModes::like(const std::optional<sfs::path>& input_dir) {
  const mode_t mask = current_umask();
  OutputModes modes{static_cast<mode_t>(0777 & ~mask), static_cast<mode_t>(0666 & ~mask)};
  struct stat st {};
  if (input_dir && ::stat(input_dir->c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    modes.dir &= st.st_mode & 0777;
    if (::stat((*input_dir / "manifest.json").c_str(), &st) == 0) modes.file &= st.st_mode & 0666;
  }
  return modes;
}

bool is_checkpoint_dir(const sfs::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  return ::lstat((dir / "manifest.json").c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

namespace {

[[noreturn]] void cannot_create(const sfs::path& output, const std::string& why) {
  throw Error(ErrorKind::kUsage, "cannot create output " + quoted(output) + ": " + why);
}

// What a path is, for messages: "a symbolic link", "a file", ...
std::string kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a file";
  if (S_ISDIR(mode)) return "a directory";
  return "a special file";
}

// The parent directory, opened; reports a missing parent or one that is a file plainly.
int open_parent(const sfs::path& output) {
  const sfs::path parent = parent_dir(output);
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) return fd;
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

// lstat relative to the parent; nullopt when the name does not exist.
std::optional<struct stat> stat_at(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return st;
  if (errno == ENOENT) return std::nullopt;
  throw_errno("cannot examine '" + name + "'", errno);
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

std::string read_fd_text(int fd) {
  std::string text(4096, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return text;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

// Opens and locks the lock file; returns the fd and the previous owner's text. Retries when
// the file was unlinked by its previous owner between our open and our lock.
int take_lock(int parent_fd, const sfs::path& output, std::string& previous) {
  const sfs::path lock_path = lock_path_for(output);
  const std::string name = lock_path.filename();
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::openat(parent_fd, name.c_str(),
                            O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0 && errno == ELOOP) {
      cannot_create(output, "lock file " + quoted(lock_path) +
                                " is a symbolic link; refusing to follow it (remove it)");
    }
    if (fd < 0) {
      cannot_create(output,
                    "cannot create lock file " + quoted(lock_path) + ": " + std::strerror(errno));
    }
    struct stat st {};
    ::fstat(fd, &st);
    if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) {
      ::close(fd);
      cannot_create(output, "lock file " + quoted(lock_path) +
                                " is not a regular file of this user; remove it");
    }
    bool locked = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (!locked && errno == EWOULDBLOCK) {
      const OwnerInfo owner = OwnerInfo::from_text(read_fd_text(fd));
      ::close(fd);
      throw Error(ErrorKind::kUsage, "output " + quoted(output) +
                                         " is being written by another run (" + owner.describe() +
                                         "); wait for it to finish or stop it");
    }
    if (!locked) {
      // No working locks here (Lustre mounted without -o flock): a same-host owner is
      // checked by pid; any other recorded owner is assumed alive.
      const int err = errno;
      const OwnerInfo owner = OwnerInfo::from_text(read_fd_text(fd));
      const OwnerInfo me = OwnerInfo::current();
      const bool dead =
          owner.pid == 0 || (owner.host == me.host &&
                             ::kill(static_cast<pid_t>(owner.pid), 0) != 0 && errno == ESRCH);
      if (!dead) {
        ::close(fd);
        throw Error(ErrorKind::kUsage,
                    "output " + quoted(output) + " may be being written by another run (" +
                        owner.describe() + "); this filesystem has no working file locks (" +
                        std::strerror(err) + "): if that run is gone, remove " + quoted(lock_path));
      }
    }
    // The file we locked must still be the one at the name (its owner unlinks it on exit).
    const auto now = stat_at(parent_fd, name);
    if (now && same_file(*now, st)) {
      previous = read_fd_text(fd);
      return fd;
    }
    ::close(fd);
  }
  throw Error(ErrorKind::kIo, "cannot take the lock " + quoted(lock_path) + ": it keeps changing");
}

OutputOwner::OutputOwner(sfs::path output, bool force)
    : output_(normalized(output)), staging_(staging_path_for(output_)), force_(force) {
  parent_fd_ = open_parent(output_);
  try {
    std::string previous;
    lock_fd_ = take_lock(parent_fd_, output_, previous);
    const OwnerInfo me = OwnerInfo::current();
    const std::string text = me.to_text();
    if (::ftruncate(lock_fd_, 0) != 0 ||
        ::pwrite(lock_fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      throw_errno("cannot write lock file " + quoted(lock_path_for(output_)), errno);
    }
    const std::string who = OwnerInfo::from_text(previous).describe();

    // Recovery: we hold the lock, so whoever left these is gone.
    const std::string staging_name = staging_.filename();
    if (auto st = stat_at(parent_fd_, staging_name)) {
      check_ours(staging_, *st);
      std::error_code ec;
      sfs::remove_all(staging_, ec);
      if (ec)
        throw Error(ErrorKind::kIo, "cannot remove " + quoted(staging_) + ": " + ec.message());
      core::log::warn("removed {}, the staging directory of a run that did not finish ({})",
                      quoted(staging_), who);
    }
    const sfs::path old = old_path_for(output_);
    if (auto st = stat_at(parent_fd_, old.filename())) {
      check_ours(old, *st);
      if (!stat_at(parent_fd_, output_.filename())) {
        rename_or_throw(old, output_);
        fsync_path(parent_dir(output_));
        core::log::warn(
            "restored the previous output {} from {}: a run with --force ({}) died between "
            "its two renames",
            quoted(output_), quoted(old), who);
      } else if (is_checkpoint_dir(output_)) {
        std::error_code ec;
        sfs::remove_all(old, ec);
        if (ec) throw Error(ErrorKind::kIo, "cannot remove " + quoted(old) + ": " + ec.message());
        core::log::warn(
            "removed {}, the previous output replaced by a run that did not finish "
            "its clean-up ({})",
            quoted(old), who);
      } else {
        throw Error(ErrorKind::kUsage, "both " + quoted(output_) + " and " + quoted(old) +
                                           " exist and the first is not a complete checkpoint: "
                                           "check them and remove one by hand");
      }
    }

    // The output: absent, or --force and one of our checkpoints.
    if (auto st = stat_at(parent_fd_, output_.filename())) {
      if (!force_) {
        throw Error(ErrorKind::kUsage,
                    "output " + quoted(output_) + " already exists; pass --force to replace it");
      }
      if (!is_checkpoint_dir(output_)) {
        cannot_create(output_, "it exists and is " +
                                   (S_ISDIR(st->st_mode) ? std::string("a directory without ") +
                                                               "manifest.json, not an eplb "
                                                               "checkpoint"
                                                         : kind_of(st->st_mode)) +
                                   "; --force replaces only an eplb checkpoint: remove it by hand");
      }
    }

    if (::mkdirat(parent_fd_, staging_name.c_str(), 0700) != 0) {
      const int err = errno;
      if (err == EACCES || err == EPERM || err == EROFS) {
        cannot_create(output_, "cannot create " + quoted(staging_) + ": " + std::strerror(err));
      }
      throw_errno("cannot create staging directory " + quoted(staging_), err);
    }
    staging_fd_ =
        ::openat(parent_fd_, staging_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st {};
    if (staging_fd_ < 0 || ::fstat(staging_fd_, &st) != 0) {
      throw Error(ErrorKind::kIo, "staging directory " + quoted(staging_) + " vanished");
    }
    staging_dev_ = st.st_dev;
    staging_ino_ = st.st_ino;
    on_signal_.emplace([this] { release(); });
    core::fault::kill_point("staging");
  } catch (...) {
    if (lock_fd_ >= 0) {
      // Our lock file stays for the next run unless we made it ours; unlinking is safe
      // only while holding the lock.
      ::unlinkat(parent_fd_, lock_path_for(output_).filename().c_str(), 0);
      ::close(lock_fd_);
    }
    if (staging_fd_ >= 0) ::close(staging_fd_);
    ::close(parent_fd_);
    throw;
  }
}

void OutputOwner::check_still_owned() const {
  const auto lock = stat_at(parent_fd_, lock_path_for(output_).filename());
  struct stat mine {};
  ::fstat(lock_fd_, &mine);
  const auto staging = stat_at(parent_fd_, staging_.filename());
  if (!lock || !same_file(*lock, mine) || !staging || staging->st_dev != staging_dev_ ||
      staging->st_ino != staging_ino_) {
    throw Error(ErrorKind::kIo, "this run no longer owns " + quoted(staging_) +
                                    ": it or the lock file " + quoted(lock_path_for(output_)) +
                                    " was removed or replaced while the run was writing; "
                                    "nothing was committed");
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
  const sfs::path old = old_path_for(output_);
  const bool replace = stat_at(parent_fd_, output_.filename()).has_value();
  if (replace && !force_) {
    throw Error(ErrorKind::kUsage,
                "output " + quoted(output_) + " already exists; pass --force to replace it");
  }
  if (replace && !is_checkpoint_dir(output_)) {
    cannot_create(output_, "it appeared during the run and is not an eplb checkpoint");
  }
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
  fsync_path(parent_dir(output_));
  if (replace) {
    // The commit has happened; a leftover old copy is worth a warning, not a failure (the
    // next run on this name removes it).
    sfs::remove_all(old, ec);
    if (ec) {
      core::log::warn("could not remove the previous output, now at {}: {}", quoted(old),
                      ec.message());
    }
  }
}

void OutputOwner::discard() noexcept {
  if (committed_ || parent_fd_ < 0) return;
  // Only while the lock at the name is still ours: a run that took the name after ours was
  // removed owns whatever staging directory is there now.
  struct stat st {
  }, lock_now{}, lock_mine{};
  const std::string lock_name = lock_path_for(output_).filename();
  if (::fstat(lock_fd_, &lock_mine) != 0 ||
      ::fstatat(parent_fd_, lock_name.c_str(), &lock_now, AT_SYMLINK_NOFOLLOW) != 0 ||
      !same_file(lock_mine, lock_now)) {
    return;
  }
  if (::fstatat(parent_fd_, staging_.filename().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
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
  struct stat mine {
  }, now{};
  const std::string lock_name = lock_path_for(output_).filename();
  if (::fstat(lock_fd_, &mine) == 0 &&
      ::fstatat(parent_fd_, lock_name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
      same_file(mine, now)) {
    ::unlinkat(parent_fd_, lock_name.c_str(), 0);
  }
  ::close(lock_fd_);
  if (staging_fd_ >= 0) ::close(staging_fd_);
  ::close(parent_fd_);
}

void fsync_path(const sfs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open " + quoted(path) + " to fsync it", errno);
  // Some filesystems refuse fsync on directories (EINVAL); nothing more can be done there.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    throw_errno("cannot fsync " + quoted(path), err);
  }
  ::close(fd);
}

void write_file_atomic(const sfs::path& path, const std::string& content) {
  static std::atomic<unsigned> counter{0};
  const sfs::path target = normalized(path);
  // Same directory as the target, so rename() is atomic; pid + counter keep writers apart.
  const sfs::path tmp =
      sibling(target, ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
  write_new_file(tmp, content);
  core::fault::kill_point("renaming-" + target.filename().string());
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_errno("cannot rename " + quoted(tmp) + " to " + quoted(target), err);
  }
  fsync_path(parent_dir(target));
}

int remove_stale_temporaries(const sfs::path& path) {
  const sfs::path target = normalized(path);
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  const sfs::path dir = parent_dir(target);
  int removed = 0;
  std::error_code ec;
  for (sfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    // Only our own pattern: digits, one dot, digits.
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    const auto digits = [](std::string_view s) {
      return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
    };
    if (dot == std::string::npos || !digits(std::string_view(rest).substr(0, dot)) ||
        !digits(std::string_view(rest).substr(dot + 1))) {
      continue;
    }
    if (::unlink(it->path().c_str()) != 0 && errno != ENOENT) {
      throw_errno("cannot remove the stale temporary file " + quoted(it->path()), errno);
    }
    ++removed;
  }
  if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(dir) + ": " + ec.message());
  if (removed > 0) fsync_path(dir);
  return removed;
}

void remove_tree_noexcept(const sfs::path& path) noexcept {
  try {
    std::error_code ec;
    sfs::remove_all(path, ec);
  } catch (...) {  // bad_alloc: best effort means giving up quietly
  }
}

std::optional<uint64_t> free_bytes(const sfs::path& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0 || st.f_blocks == 0) return std::nullopt;
  return static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
}

void require_free_space(const sfs::path& dir, uint64_t bytes, std::string_view what,
                        std::string_view remedy) {
  const auto free = free_bytes(dir);
  if (!free || bytes <= *free) {
    core::log::detail("{}: {} B needed, {} B free on the filesystem of '{}'", what, bytes,
                      free ? std::to_string(*free) : std::string("(not reported)"), dir.string());
    return;
  }
  throw core::Error(
      core::ErrorKind::kIo,
      fmt::format("{} needs at least {} ({} B) on the filesystem of '{}', which has {} ({} B) "
                  "free: nothing was written; {}",
                  what, core::human_bytes(static_cast<double>(bytes)), bytes, dir.string(),
                  core::human_bytes(static_cast<double>(*free)), *free, remedy));
}

}  // namespace eplb::fs
