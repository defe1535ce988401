// File descriptors: one owner, and the safe way to open an input file for reading. Here,
// not in lib/fs, because the pure libraries (placement, balance) read their small input
// files through core's read_input_file, which opens them this way, and must not link
// lib/fs; everything else about files (full transfers, O_DIRECT, durability, creation,
// publication, ownership) is lib/fs's, built on this owner.
//
// Local: acts on the calling process only.
#pragma once

#include <cstddef>
#include <filesystem>
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

}  // namespace eplb::core
