// The ownership lock of a checkpoint name (.<name>.eplb-lock), shared by fs::OutputOwner
// (a new output) and io::CheckpointLock (an update in place).
#pragma once

#include <filesystem>
#include <string>

namespace eplb::fs {

// Opens `.<name>.eplb-lock` next to `output` relative to `parent_fd` (O_NOFOLLOW, this
// user's regular file only) and flock()s it without blocking. Returns the fd; `previous`
// receives the text the previous owner left in it. Held by a live run: throws kUsage
// naming it. Local.
int take_lock(int parent_fd, const std::filesystem::path& output, std::string& previous);

}  // namespace eplb::fs
