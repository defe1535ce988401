// Internal to lib/fs: the names next to an output or a published file.
#pragma once

#include <filesystem>
#include <string>

namespace eplb::fs::detail {

// "out/" names the directory "out": drop the empty last component.
inline std::filesystem::path normalized(const std::filesystem::path& path) {
  std::filesystem::path p = path.lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

// "<parent>/.<name><suffix>", a sibling of `path`.
inline std::filesystem::path sibling(const std::filesystem::path& path, const std::string& suffix) {
  const std::filesystem::path p = normalized(path);
  return p.parent_path() / ("." + p.filename().string() + suffix);
}

// The directory holding `path` ("." for a bare name).
inline std::filesystem::path parent_dir(const std::filesystem::path& path) {
  const std::filesystem::path parent = normalized(path).parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

}  // namespace eplb::fs::detail
