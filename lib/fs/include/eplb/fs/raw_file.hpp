// A file-descriptor owner and positioned reads and writes of a shard's
// contiguous datasets, outside HDF5 (docs/FORMAT.md: their offsets are fixed when the
// file is created). HDF5 keeps the metadata; rows, ids and checksums move with
// pread/pwrite, so no HDF5 lock is held while bytes move and threads overlap freely.
// Every failure throws core::Error(kIo) whose message is the system's, plus where.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "eplb/core/fd.hpp"

namespace eplb::fs {

// Move-only owner of a file descriptor (a core::Fd) whose close() reports a failure, as a
// writer needs; the destructor closes quietly.
class RawFile {
 public:
  RawFile() = default;
  explicit RawFile(int fd) : fd_(fd) {}
  int get() const { return fd_.get(); }
  bool valid() const { return !fd_.empty(); }
  // Closes and reports a failure (kIo, "close: ..."); a no-op when not open.
  void close();

 private:
  core::Fd fd_;
};

// Positioned I/O over core's loops (eplb/core/fd.hpp) with lib/io's messages.
// Exactly out.size() bytes at `offset`. kIo "pread of N bytes at byte X: <errno text>", or
// kInput when the file ends first (it is shorter than its own metadata says).
void pread_exact(int fd, std::span<std::byte> out, uint64_t offset);
// All of `bytes` at `offset`. kIo "pwrite of N bytes at byte X: <errno text>" (a full disk:
// "No space left on device").
void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset);
// Reads the front of `out` at `offset` on a descriptor opened with O_DIRECT (offset,
// out.size() and address 4 KiB-aligned) and returns how many bytes it read: all of them,
// or fewer where the file ends or the kernel stops short (the caller reads the rest
// buffered, which reports a truncated file as pread_exact does). nullopt, nothing read,
// when the filesystem refuses direct I/O for it (EINVAL on the first transfer). Other
// failures throw as pread_exact.
std::optional<size_t> pread_direct(int fd, std::span<std::byte> out, uint64_t offset);
// pwrite_all on a descriptor opened with O_DIRECT (bytes, offset and address 4 KiB-aligned).
// False, nothing written, when the filesystem refuses direct I/O for it (EINVAL on the
// first transfer): write the bytes buffered instead. Other failures throw as pwrite_all.
bool pwrite_direct(int fd, std::span<const std::byte> bytes, uint64_t offset);
// Starts write-back of [offset, offset + bytes) and, with `wait`, waits for it first
// (sync_file_range). A hint: filesystems without it are fine; EIO and the like throw kIo.
void start_writeback(int fd, uint64_t offset, uint64_t bytes, bool wait);
// fdatasync, kIo on failure.
void data_sync(int fd);

}  // namespace eplb::fs
