// File descriptors and positioned I/O for lib/hf (fd.hpp).
#include "fd.hpp"

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

}  // namespace

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
