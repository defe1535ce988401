#include "raw_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "eplb/core/error.hpp"

namespace eplb::io::detail {
namespace {

using core::Error;
using core::ErrorKind;

// One call moves at most this much: Linux moves at most ~2 GiB per read/write anyway.
constexpr size_t kMaxChunk = size_t{1} << 30;

std::string range_text(const char* call, size_t bytes, uint64_t offset) {
  return std::string(call) + " of " + std::to_string(bytes) + " bytes at byte " +
         std::to_string(offset);
}

}  // namespace

RawFile& RawFile::operator=(RawFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

RawFile::~RawFile() {
  if (fd_ >= 0) ::close(fd_);
}

void RawFile::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(ErrorKind::kIo, std::string("close: ") + std::strerror(errno));
}

void pread_exact(int fd, std::span<std::byte> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    const size_t chunk = std::min(out.size() - done, kMaxChunk);
    const ssize_t n = ::pread(fd, out.data() + done, chunk, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw Error(ErrorKind::kIo, std::string(std::strerror(errno)) + " (" +
                                      range_text("pread", chunk, offset + done) + ")");
    }
    if (n == 0) {
      throw Error(ErrorKind::kInput, "the file ends at byte " + std::to_string(offset + done) +
                                         ", inside the dataset's " + std::to_string(out.size()) +
                                         " bytes at byte " + std::to_string(offset) +
                                         " (truncated?)");
    }
    done += static_cast<size_t>(n);
  }
}

void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    const size_t chunk = std::min(bytes.size() - done, kMaxChunk);
    const ssize_t n = ::pwrite(fd, bytes.data() + done, chunk, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // A pwrite of a non-empty range returning 0 makes no progress: report it, do not spin.
      const std::string cause = n < 0 ? std::strerror(errno) : "no progress";
      throw Error(ErrorKind::kIo, cause + " (" + range_text("pwrite", chunk, offset + done) + ")");
    }
    done += static_cast<size_t>(n);
  }
}

bool pwrite_direct(int fd, std::span<const std::byte> bytes, uint64_t offset) {
  if (bytes.empty()) return true;
  const size_t first = std::min(bytes.size(), kMaxChunk);
  ssize_t n = 0;
  do {
    n = ::pwrite(fd, bytes.data(), first, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EINVAL) return false;
  if (n <= 0) {
    const std::string cause = n < 0 ? std::strerror(errno) : "no progress";
    throw Error(ErrorKind::kIo, cause + " (" + range_text("direct pwrite", first, offset) + ")");
  }
  // A short direct write leaves an aligned remainder only when it stopped on a block; the
  // rest goes through pwrite_all, which reports any failure with its position.
  pwrite_all(fd, bytes.subspan(static_cast<size_t>(n)), offset + static_cast<uint64_t>(n));
  return true;
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
  throw Error(ErrorKind::kIo,
              std::string(std::strerror(errno)) + " (" +
                  range_text("sync_file_range", static_cast<size_t>(bytes), offset) + ")");
}

void data_sync(int fd) {
  int rc = 0;
  do {
    rc = ::fdatasync(fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) throw Error(ErrorKind::kIo, std::string(std::strerror(errno)) + " (fdatasync)");
}

}  // namespace eplb::io::detail
