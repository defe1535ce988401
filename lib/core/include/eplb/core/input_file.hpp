// Reading the small input files (placements, manifests, load statistics, config.json,
// safetensors index files) safely: only regular files, never more than a bounded size.
//
// Local: acts on the calling process only. Never blocks on a FIFO or a device, and never
// reads an unbounded stream (`/dev/zero`) into memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace eplb::core {

// The documented limit on every small input file (docs/CLI.md): 256 MiB, far above any
// real placement (DeepSeek-V3: 58 layers x 288 slots is about 100 KB) or load file.
inline constexpr size_t kMaxInputFileBytes = size_t{256} << 20;

// The whole content of `path`. Throws core::Error naming the path and `what` (e.g.
// "placement file"):
//   - kInput: it does not exist, is not a regular file (a directory, FIFO, socket or
//     device), or is larger than `max_bytes`;
//   - kIo: it exists but cannot be opened or read (permissions, I/O error).
std::string read_input_file(const std::filesystem::path& path, std::string_view what,
                            size_t max_bytes = kMaxInputFileBytes);

}  // namespace eplb::core
