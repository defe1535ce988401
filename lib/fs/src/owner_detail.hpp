// Internal to lib/fs: what the output owner and the name lock share.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>

namespace eplb::fs::detail {

// Throws core::Error(kUsage) "cannot create output 'OUT': WHY".
[[noreturn]] void cannot_create(const std::filesystem::path& output, const std::string& why);

// What a path is, for messages: "a symbolic link", "a file", ...
std::string kind_of(mode_t mode);

// lstat of `name` relative to `dir_fd`; nullopt when the name does not exist. Throws kIo
// on any other failure.
std::optional<struct stat> stat_at(int dir_fd, const std::string& name);

inline bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace eplb::fs::detail
