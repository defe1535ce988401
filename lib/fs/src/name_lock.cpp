// The lock on an output name (take_lock, eplb/fs/output_owner.hpp).
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "eplb/core/error.hpp"
#include "eplb/fs/output_owner.hpp"
#include "owner_detail.hpp"

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;
using core::quoted;
using detail::cannot_create;
using detail::same_file;
using detail::stat_at;

// The text a lock file holds (its owner's description; a few hundred bytes at most).
std::string read_fd_text(int fd) {
  std::string text(4096, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return text;
}

// Where flock() is refused (Lustre mounted without -o flock): a same-host owner is checked
// by pid; any other recorded owner is assumed alive. Throws kUsage unless the recorded
// owner is gone; `err` is flock's errno.
void check_owner_gone(int fd, int err, const sfs::path& output, const sfs::path& lock_path) {
  const OwnerInfo owner = OwnerInfo::from_text(read_fd_text(fd));
  const OwnerInfo me = OwnerInfo::current();
  const bool dead =
      owner.pid == 0 ||
      (owner.host == me.host && ::kill(static_cast<pid_t>(owner.pid), 0) != 0 && errno == ESRCH);
  if (dead) return;
  throw Error(ErrorKind::kUsage,
              "output " + quoted(output) + " may be being written by another run (" +
                  owner.describe() + "); this filesystem has no working file locks (" +
                  std::strerror(err) + "): if that run is gone, remove " + quoted(lock_path));
}

}  // namespace

// Opens and locks the lock file; returns it and the previous owner's text. Retries when the
// file was unlinked by its previous owner between our open and our lock.
core::Fd take_lock(int parent_fd, const sfs::path& output, std::string& previous) {
  const sfs::path lock_path = lock_path_for(output);
  const std::string name = lock_path.filename();
  for (int attempt = 0; attempt < 100; ++attempt) {
    core::Fd fd(::openat(parent_fd, name.c_str(),
                         O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
    if (fd.empty() && errno == ELOOP) {
      cannot_create(output, "lock file " + quoted(lock_path) +
                                " is a symbolic link; refusing to follow it (remove it)");
    }
    if (fd.empty()) {
      cannot_create(output,
                    "cannot create lock file " + quoted(lock_path) + ": " + std::strerror(errno));
    }
    struct stat st {};
    ::fstat(fd.get(), &st);
    if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) {
      cannot_create(output, "lock file " + quoted(lock_path) +
                                " is not a regular file of this user; remove it");
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == EWOULDBLOCK) {
        const OwnerInfo owner = OwnerInfo::from_text(read_fd_text(fd.get()));
        throw Error(ErrorKind::kUsage, "output " + quoted(output) +
                                           " is being written by another run (" + owner.describe() +
                                           "); wait for it to finish or stop it");
      }
      check_owner_gone(fd.get(), err, output, lock_path);
    }
    // The file we locked must still be the one at the name (its owner unlinks it on exit).
    const auto now = stat_at(parent_fd, name);
    if (now && same_file(*now, st)) {
      previous = read_fd_text(fd.get());
      return fd;
    }
  }
  throw Error(ErrorKind::kIo, "cannot take the lock " + quoted(lock_path) + ": it keeps changing");
}

}  // namespace eplb::fs
