// Atomic publication of a checkpoint directory (POSIX). Local: the engine decides which
// rank calls what (rank 0 creates, commits and removes; every rank writes and fsyncs).
#pragma once

#include <filesystem>
#include <string>

namespace eplb::io {

// "<parent>/.<name>.eplb-staging": next to the output, so rename() stays on one filesystem.
std::filesystem::path staging_path_for(const std::filesystem::path& output);

// Creates the staging directory. Throws kUsage if `output` exists and !force, kUsage if a
// staging directory from an earlier crashed run exists (names it, says to remove it).
void create_staging(const std::filesystem::path& staging, const std::filesystem::path& output,
                    bool force);

void fsync_path(const std::filesystem::path& path);  // file or directory; throws kIo
// Writes `content` to `path` through a temporary file, fsync and rename.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

// Renames staging into place (after fsync of staging and its parent). With force and an
// existing output, the old output is moved aside first and removed only after the rename.
void commit_staging(const std::filesystem::path& staging, const std::filesystem::path& output,
                    bool force);

// Best-effort removal, never throws (used on failure paths).
void remove_tree_noexcept(const std::filesystem::path& path) noexcept;

}  // namespace eplb::io
