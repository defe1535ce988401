#include "eplb/fs/raw_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "eplb/core/error.hpp"
#include "eplb/core/fd.hpp"

namespace eplb::fs {
namespace {

using core::Error;
using core::ErrorKind;

std::string range_text(const char* call, size_t bytes, uint64_t offset) {
  return std::string(call) + " of " + std::to_string(bytes) + " bytes at byte " +
         std::to_string(offset);
}

}  // namespace

void RawFile::close() {
  const int fd = fd_.release();
  if (fd >= 0 && ::close(fd) != 0) {
    throw Error(ErrorKind::kIo, std::string("close: ") + std::strerror(errno));
  }
}

void pread_exact(int fd, std::span<std::byte> out, uint64_t offset) {
  const core::Transfer t = core::pread_full(fd, out, offset);
  if (t.complete) return;
  if (t.error != 0) {
    throw Error(ErrorKind::kIo, std::string(std::strerror(t.error)) + " (" +
                                    range_text("pread", t.attempted, offset + t.done) + ")");
  }
  throw Error(ErrorKind::kInput, "the file ends at byte " + std::to_string(offset + t.done) +
                                     ", inside the dataset's " + std::to_string(out.size()) +
                                     " bytes at byte " + std::to_string(offset) + " (truncated?)");
}

void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset) {
  const core::Transfer t = core::pwrite_full(fd, bytes, offset);
  if (t.complete) return;
  // A pwrite of a non-empty range that moved nothing: reported, not retried forever.
  const std::string cause = t.error != 0 ? std::strerror(t.error) : "no progress";
  throw Error(ErrorKind::kIo,
              cause + " (" + range_text("pwrite", t.attempted, offset + t.done) + ")");
}

std::optional<size_t> pread_direct(int fd, std::span<std::byte> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    const size_t want = std::min(out.size() - done, core::kMaxIoChunk);
    const ssize_t n = ::pread(fd, out.data() + done, want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && done == 0) return std::nullopt;
    if (n < 0) {
      throw Error(ErrorKind::kIo, std::string(std::strerror(errno)) + " (" +
                                      range_text("direct pread", want, offset + done) + ")");
    }
    done += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < want) break;  // end of file, or short: the caller goes on
  }
  return done;
}

bool pwrite_direct(int fd, std::span<const std::byte> bytes, uint64_t offset) {
  if (bytes.empty()) return true;
  const size_t first = std::min(bytes.size(), core::kMaxIoChunk);
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

}  // namespace eplb::fs
