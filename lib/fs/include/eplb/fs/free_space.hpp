// The free-space refusal: a job that cannot fit is refused before anything is written,
// by bytes and by files (inodes). Local.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

namespace eplb::fs {

// What the filesystem holding `path` has free for unprivileged writers (statvfs: f_bavail
// blocks of f_frsize bytes), or nullopt where it does not say: statvfs fails, or reports no
// blocks at all (some FUSE and network filesystems).
std::optional<uint64_t> free_bytes(const std::filesystem::path& path);
// The files (inodes) it lets unprivileged writers create (statvfs f_favail), or nullopt
// where it does not say: statvfs fails, or reports no inodes at all (btrfs and others
// allocate them on demand).
std::optional<uint64_t> free_inodes(const std::filesystem::path& path);

// At least what a job is about to create under a directory.
struct SpaceNeeded {
  uint64_t bytes = 0;
  uint64_t inodes = 0;                                      // files and directories
  SpaceNeeded(uint64_t num_bytes, uint64_t num_inodes = 0)  // NOLINT: bytes alone converts
      : bytes(num_bytes), inodes(num_inodes) {}
};

// Refuses, before anything is written, a job that cannot fit: throws kIo when `needed`
// exceeds free_bytes(dir) or free_inodes(dir), naming `what`, both figures, the directory
// and `remedy`. Does nothing where the filesystem does not say; a quota below the free
// space is still found by the writes themselves (EDQUOT).
void require_free_space(const std::filesystem::path& dir, SpaceNeeded needed, std::string_view what,
                        std::string_view remedy = "make room or choose another directory");

}  // namespace eplb::fs
