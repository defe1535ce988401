// File descriptors (eplb/core/fd.hpp).
#include "eplb/core/fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "eplb/core/error.hpp"

namespace eplb::core {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

[[noreturn]] void fail(ErrorKind kind, const std::filesystem::path& path, std::string_view what,
                       const std::string& text) {
  throw Error(kind, quoted(path) + ": " + std::string(what) + " " + text);
}

}  // namespace

void FdTraits::close(int fd) noexcept { ::close(fd); }

Fd open_regular_file(const std::filesystem::path& path, std::string_view what) {
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer. The type check
  // below then refuses it.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) fail(ErrorKind::kInput, path, what, "does not exist");
    if (err == ENOTDIR) fail(ErrorKind::kInput, path, what, "has a parent that is not a directory");
    fail(ErrorKind::kIo, path, what, std::string("cannot be opened: ") + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    fail(ErrorKind::kIo, path, what, std::string("cannot be examined: ") + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    fail(ErrorKind::kInput, path, what,
         std::string("must be a regular file, but it is ") + kind_of(st.st_mode));
  }
  // Back to blocking reads (a no-op for regular files, but explicit).
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

}  // namespace eplb::core
