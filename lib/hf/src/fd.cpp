// File descriptors and positioned I/O for lib/hf (fd.hpp).
#include "fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "eplb/core/error.hpp"

namespace eplb::hf::detail {
namespace {

using core::Error;
using core::ErrorKind;

// Linux transfers at most 0x7ffff000 bytes per call; smaller chunks keep every call well
// inside ssize_t and off_t on any platform.
constexpr size_t kMaxChunk = size_t{1} << 30;

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd open_regular_file(const std::filesystem::path& path, std::string_view what) {
  const std::string where = quoted(path) + ": " + std::string(what) + " ";
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the type check refuses it.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) throw Error(ErrorKind::kInput, where + "does not exist");
    if (err == ENOTDIR) {
      throw Error(ErrorKind::kInput, where + "has a parent that is not a directory");
    }
    throw Error(ErrorKind::kIo, where + "cannot be opened: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    throw Error(ErrorKind::kIo, where + "cannot be examined: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorKind::kInput,
                where + "must be a regular file, but it is " + kind_of(st.st_mode));
  }
  // Back to blocking reads (a no-op for regular files, but explicit).
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

uint64_t file_size(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw Error(ErrorKind::kIo, quoted(path) + ": cannot be examined: " + std::strerror(errno));
  }
  return static_cast<uint64_t>(st.st_size);
}

void pread_exact(int fd, std::span<std::byte> out, uint64_t offset,
                 const std::filesystem::path& path, const std::string& what) {
  size_t done = 0;
  while (done < out.size()) {
    const size_t chunk = std::min(out.size() - done, kMaxChunk);
    const ssize_t n = ::pread(fd, out.data() + done, chunk, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw Error(ErrorKind::kIo, quoted(path) + ": cannot read " + what + " at byte " +
                                      std::to_string(offset + done) + ": " + std::strerror(errno));
    }
    if (n == 0) {
      throw Error(ErrorKind::kIo, quoted(path) + ": cannot read " + what +
                                      ": the file ends at byte " + std::to_string(offset + done) +
                                      ", before the " + std::to_string(out.size()) + " bytes at " +
                                      std::to_string(offset) + " (did it shrink after opening?)");
    }
    done += static_cast<size_t>(n);
  }
}

void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset,
                const std::filesystem::path& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const size_t chunk = std::min(bytes.size() - done, kMaxChunk);
    const ssize_t n = ::pwrite(fd, bytes.data() + done, chunk, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // pwrite of a non-empty range returning 0 makes no progress: report it, do not spin.
      throw Error(ErrorKind::kIo, "cannot write " + quoted(path) + " at byte " +
                                      std::to_string(offset + done) + ": " +
                                      (n < 0 ? std::strerror(errno) : "no progress"));
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace eplb::hf::detail
