// Making written bytes durable, one way: fsync and fdatasync with their errors, closing a
// written file so that a deferred write error is seen, and write-back started early.
// Local: acts on the calling process only.
#pragma once

#include <cstdint>
#include <filesystem>

#include "eplb/core/fd.hpp"

namespace eplb::fs {

// fsync(fd), retried on EINTR; kIo "cannot fsync 'PATH': <errno text>".
void sync_file(int fd, const std::filesystem::path& path);
// fdatasync(fd) (the data and the size, not the times), retried on EINTR; kIo "cannot
// fdatasync 'PATH': <errno text>".
void sync_data(int fd, const std::filesystem::path& path);
// Opens `path` (a file or a directory) and fsyncs it; kIo "cannot open 'PATH' to fsync
// it: ..." or "cannot fsync 'PATH': ...". A filesystem that refuses fsync on a directory
// (EINVAL) is left as it is: nothing more can be done there.
void fsync_path(const std::filesystem::path& path);
// fsync_path on every regular file and directory under `root`, then on `root`.
void fsync_tree(const std::filesystem::path& root);
// Closes a file this process wrote and reports a failed close (a deferred write error, as
// NFS gives): kIo "close: <errno text>". The owner is empty afterwards, also on failure
// (a retry cannot help). A no-op when empty.
void close_checked(core::Fd& fd);
// Starts write-back of [offset, offset + bytes) and, with `wait`, waits for it first
// (sync_file_range). A hint: filesystems without it are fine; EIO and the like throw kIo
// "<errno text> (sync_file_range of N bytes at byte X)".
void start_writeback(int fd, uint64_t offset, uint64_t bytes, bool wait);

}  // namespace eplb::fs
