// File descriptors: one owner, the safe way to open an input file for reading, and
// positioned reads and writes that move every byte.
//
// Local: acts on the calling process only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>

#include "eplb/core/unique_handle.hpp"

namespace eplb::core {

struct FdTraits {
  static int null() noexcept { return -1; }
  // ::close, errors ignored: an owner closes quietly. A writer that must see a failed close
  // releases the descriptor and closes it itself.
  static void close(int fd) noexcept;
};

// Move-only owner of a file descriptor; the destructor closes it quietly.
using Fd = UniqueHandle<int, FdTraits>;

// Opens `path` read-only (close-on-exec), following symbolic links (Hugging Face caches are
// links into a blob store). Throws core::Error naming the path and `what` (e.g. "placement
// file"):
//   - kInput: it does not exist, has a parent that is not a directory, or is not a regular
//     file (a directory, FIFO, socket or device; a FIFO is refused without blocking);
//   - kIo: it exists but cannot be opened or examined.
Fd open_regular_file(const std::filesystem::path& path, std::string_view what);

// One pread/pwrite call moves at most this much: Linux moves at most 0x7ffff000 bytes per
// call anyway, and smaller calls stay well inside ssize_t and off_t on any platform.
inline constexpr size_t kMaxIoChunk = size_t{1} << 30;

// Where a full transfer stopped. Callers word their own errors from it (the file, what was
// being read), so these loops are the only ones and the messages stay each caller's.
struct Transfer {
  size_t done = 0;  // bytes moved: all of them when complete
  bool complete = false;
  size_t attempted = 0;  // when not complete: the bytes the failing call asked for
  int error = 0;         // when not complete: its errno; 0 when the file ended (pread) or a
                         // call moved nothing (pwrite)
};

// Local. Reads out.size() bytes at `offset` with pread, calling again after a short read or
// EINTR, in calls of at most kMaxIoChunk. Never throws.
Transfer pread_full(int fd, std::span<std::byte> out, uint64_t offset) noexcept;
// Local. Writes all of `bytes` at `offset` with pwrite, as pread_full. A call that moves
// nothing stops the transfer (no spinning on a device that accepts nothing).
Transfer pwrite_full(int fd, std::span<const std::byte> bytes, uint64_t offset) noexcept;

}  // namespace eplb::core
