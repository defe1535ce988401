// The free-space refusal (eplb/fs/free_space.hpp).
#include "eplb/fs/free_space.hpp"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <string>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/units.hpp"

namespace eplb::fs {
namespace {

std::optional<struct statvfs> stat_fs(const std::filesystem::path& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return std::nullopt;
  return st;
}

std::string or_unknown(const std::optional<uint64_t>& value) {
  return value ? std::to_string(*value) : std::string("(not reported)");
}

}  // namespace

std::optional<uint64_t> free_bytes(const std::filesystem::path& path) {
  const auto st = stat_fs(path);
  if (!st || st->f_blocks == 0) return std::nullopt;
  return static_cast<uint64_t>(st->f_bavail) * static_cast<uint64_t>(st->f_frsize);
}

std::optional<uint64_t> free_inodes(const std::filesystem::path& path) {
  const auto st = stat_fs(path);
  if (!st || st->f_files == 0) return std::nullopt;
  return static_cast<uint64_t>(st->f_favail);
}

void require_free_space(const std::filesystem::path& dir, SpaceNeeded needed, std::string_view what,
                        std::string_view remedy) {
  const auto bytes = free_bytes(dir);
  const auto inodes = free_inodes(dir);
  core::log::detail(
      "{}: {} B and {} files needed, {} B and {} files free on the filesystem of "
      "{}",
      what, needed.bytes, needed.inodes, or_unknown(bytes), or_unknown(inodes), core::quoted(dir));
  if (bytes && needed.bytes > *bytes) {
    throw core::Error(
        core::ErrorKind::kIo,
        fmt::format("{} needs at least {} ({} B) on the filesystem of {}, which has {} ({} B) "
                    "free: nothing was written; {}",
                    what, core::format_bytes(static_cast<double>(needed.bytes)), needed.bytes,
                    core::quoted(dir), core::format_bytes(static_cast<double>(*bytes)), *bytes,
                    remedy));
  }
  if (inodes && needed.inodes > *inodes) {
    throw core::Error(core::ErrorKind::kIo,
                      fmt::format("{} needs at least {} new files on the filesystem of {}, which "
                                  "lets this user create {} more (no free inodes): nothing was "
                                  "written; {}",
                                  what, needed.inodes, core::quoted(dir), *inodes, remedy));
  }
}

}  // namespace eplb::fs
