// fsync, fdatasync, checked close and write-back (eplb/fs/durable.hpp).
#include "eplb/fs/durable.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "eplb/core/error.hpp"

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;
using core::quoted;

// `call(fd)` retried on EINTR; its errno, or 0.
template <typename Call>
int retried(Call call, int fd) {
  int rc = 0;
  do {
    rc = call(fd);
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

}  // namespace

void sync_file(int fd, const sfs::path& path) {
  if (const int err = retried(::fsync, fd); err != 0) {
    throw Error(ErrorKind::kIo, "cannot fsync " + quoted(path) + ": " + std::strerror(err));
  }
}

void sync_data(int fd, const sfs::path& path) {
  if (const int err = retried(::fdatasync, fd); err != 0) {
    throw Error(ErrorKind::kIo, "cannot fdatasync " + quoted(path) + ": " + std::strerror(err));
  }
}

void fsync_path(const sfs::path& path) {
  const core::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.empty()) {
    throw Error(ErrorKind::kIo,
                "cannot open " + quoted(path) + " to fsync it: " + std::strerror(errno));
  }
  // Some filesystems refuse fsync on directories (EINVAL); nothing more can be done there.
  if (const int err = retried(::fsync, fd.get()); err != 0 && err != EINVAL) {
    throw Error(ErrorKind::kIo, "cannot fsync " + quoted(path) + ": " + std::strerror(err));
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

void close_checked(core::Fd& fd) {
  const int raw = fd.release();
  if (raw >= 0 && ::close(raw) != 0) {
    throw Error(ErrorKind::kIo, std::string("close: ") + std::strerror(errno));
  }
}

void start_writeback(int fd, uint64_t offset, uint64_t bytes, bool wait) {
  if (bytes == 0) return;
  unsigned flags = SYNC_FILE_RANGE_WRITE;
  if (wait) flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
  int rc = 0;
  do {
    rc = ::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(bytes), flags);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0 || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == ESPIPE) {
    return;  // only a hint: the final fdatasync still makes the file durable
  }
  throw Error(ErrorKind::kIo, std::string(std::strerror(errno)) + " (sync_file_range of " +
                                  std::to_string(bytes) + " bytes at byte " +
                                  std::to_string(offset) + ")");
}

}  // namespace eplb::fs
