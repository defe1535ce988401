// Publishing a small file atomically (manifests, reports, placements, pictures): a reader
// sees the old content or the new one, never a part. Local.
#pragma once

#include <filesystem>
#include <string>

namespace eplb::fs {

// Writes `content` to a new temporary file next to `path` (".NAME.tmp.<pid>.<n>", created
// with O_EXCL | O_NOFOLLOW, so nothing planted at such a name is followed or truncated:
// another name is tried instead), fsyncs and closes it, renames it to `path` and fsyncs
// the directory. Throws core::Error(kIo) naming the file; the temporary file is removed
// on failure.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

// Removes the temporary files that write_file_atomic(path, ...) calls of dead processes
// left next to `path` (".<name>.tmp.<pid>.<n>"); returns how many. Call only where no live
// process can be writing `path` (under the checkpoint's lock). Throws kIo.
int remove_stale_temporaries(const std::filesystem::path& path);

}  // namespace eplb::fs
