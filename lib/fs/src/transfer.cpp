// Full transfers and their failures (eplb/fs/transfer.hpp).
#include "eplb/fs/transfer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace eplb::fs {
namespace {

using core::Error;
using core::ErrorKind;

// The loop of pread_full and pwrite_full; `call(data, bytes, at)` is one pread or pwrite.
template <typename Byte, typename Call>
Transfer transfer_full(std::span<Byte> bytes, uint64_t offset, Call call) noexcept {
  Transfer t;
  while (t.done < bytes.size()) {
    const size_t chunk = std::min(bytes.size() - t.done, kMaxIoChunk);
    const ssize_t n = call(bytes.data() + t.done, chunk, static_cast<off_t>(offset + t.done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      t.attempted = chunk;
      t.error = n < 0 ? errno : 0;
      return t;
    }
    t.done += static_cast<size_t>(n);
  }
  t.complete = true;
  return t;
}

std::string range_text(const char* call, size_t bytes, uint64_t offset) {
  return std::string(call) + " of " + std::to_string(bytes) + " bytes at byte " +
         std::to_string(offset);
}

}  // namespace

Transfer pread_full(int fd, std::span<std::byte> out, uint64_t offset) noexcept {
  return transfer_full(out, offset, [fd](std::byte* data, size_t bytes, off_t at) {
    return ::pread(fd, data, bytes, at);
  });
}

Transfer pwrite_full(int fd, std::span<const std::byte> bytes, uint64_t offset) noexcept {
  return transfer_full(bytes, offset, [fd](const std::byte* data, size_t n, off_t at) {
    return ::pwrite(fd, data, n, at);
  });
}

ErrorKind failure_kind(const Transfer& incomplete) {
  return incomplete.error == 0 ? ErrorKind::kInput : ErrorKind::kIo;
}

void pread_exact(int fd, std::span<std::byte> out, uint64_t offset) {
  const Transfer t = pread_full(fd, out, offset);
  if (t.complete) return;
  if (t.error != 0) {
    throw Error(failure_kind(t), std::string(std::strerror(t.error)) + " (" +
                                     range_text("pread", t.attempted, offset + t.done) + ")");
  }
  throw Error(failure_kind(t), "the file ends at byte " + std::to_string(offset + t.done) +
                                   ", inside the dataset's " + std::to_string(out.size()) +
                                   " bytes at byte " + std::to_string(offset) + " (truncated?)");
}

void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset) {
  const Transfer t = pwrite_full(fd, bytes, offset);
  if (t.complete) return;
  // A pwrite of a non-empty range that moved nothing: reported, not retried forever.
  const std::string cause = t.error != 0 ? std::strerror(t.error) : "no progress";
  throw Error(ErrorKind::kIo,
              cause + " (" + range_text("pwrite", t.attempted, offset + t.done) + ")");
}

uint64_t file_size(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw Error(ErrorKind::kIo,
                core::quoted(path) + ": cannot be examined: " + std::strerror(errno));
  }
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace eplb::fs
