// Positioned reads and writes that move every byte, and the one rule for what a transfer
// that stopped short means. Local: acts on the calling process only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "eplb/core/error.hpp"

namespace eplb::fs {

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

// Reads out.size() bytes at `offset` with pread, calling again after a short read or
// EINTR, in calls of at most kMaxIoChunk. Never throws.
Transfer pread_full(int fd, std::span<std::byte> out, uint64_t offset) noexcept;
// Writes all of `bytes` at `offset` with pwrite, as pread_full. A call that moves
// nothing stops the transfer (no spinning on a device that accepts nothing).
Transfer pwrite_full(int fd, std::span<const std::byte> bytes, uint64_t offset) noexcept;

// The error kind of a transfer that did not complete, the same for every file the tool
// reads. A read that met the end of the file first: the file is shorter than what
// describes it (its own metadata, its manifest entry, its header), i.e. truncated, which
// is invalid input: kInput (exit 2, docs/CLI.md). A failed call: kIo (exit 3).
core::ErrorKind failure_kind(const Transfer& incomplete);

// Reads exactly out.size() bytes at `offset`. Throws core::Error of failure_kind():
// "<errno text> (pread of N bytes at byte X)", or "the file ends at byte X, inside the
// dataset's N bytes at byte Y (truncated?)". Callers prefix the file and what they read.
void pread_exact(int fd, std::span<std::byte> out, uint64_t offset);
// Writes all of `bytes` at `offset`; kIo "<errno text> (pwrite of N bytes at byte X)" (a
// full disk: "No space left on device").
void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset);

// The size of the open file `fd`; kIo "'PATH': cannot be examined: ..." when fstat fails.
uint64_t file_size(int fd, const std::filesystem::path& path);

}  // namespace eplb::fs
