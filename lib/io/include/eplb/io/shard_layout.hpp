// Where a shard's raw data lies in its file, for updates in place (`run --in-place`).
// Local: no communication.
//
// Every dataset of a shard is contiguous and allocated when the file is created
// (docs/FORMAT.md), so row r of a tensor of layer l is the byte range
// [offset + r * row_bytes, offset + (r + 1) * row_bytes) of the file, and the per-row
// checksums and logical ids are plain little-endian arrays. Rewriting those bytes changes
// no HDF5 metadata.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "eplb/core/fd.hpp"
#include "eplb/io/shard.hpp"

namespace eplb::io {

struct LayerOffsets {
  uint64_t logical_ids = 0;         // int32 [L]
  std::vector<uint64_t> tensors;    // per tensor: [L, row_bytes]
  std::vector<uint64_t> checksums;  // per tensor: uint64 [L] (xxh3/<name>)
};

struct ShardLayout {
  uint64_t file_size = 0;
  std::vector<LayerOffsets> layers;
  // Where the bytes of the root attribute "checkpoint_id" (32 hex digits, a variable-length
  // string in HDF5's global heap) lie in the file.
  uint64_t checkpoint_id_offset = 0;
};

// Opens `path` read-only with HDF5 and asks it for every dataset's address; then finds the
// checkpoint id's bytes in the metadata before the first dataset (exactly one occurrence).
// Throws kInput naming the file when a dataset is not contiguous and allocated, or when the
// id cannot be located (a shard not written by this tool, or without an id).
ShardLayout read_shard_layout(const std::filesystem::path& path, const ShardInfo& info);

// A shard opened for reading byte ranges with pread. Local.
class RowFile {
 public:
  explicit RowFile(const std::filesystem::path& path);  // throws kIo
  // Reads exactly out.size() bytes at `offset`; throws kIo naming the file. With O_DIRECT
  // (from the disk, past the page cache) when `offset`, the size and the memory are 4 KiB
  // aligned and the filesystem allows it; buffered otherwise.
  void read(uint64_t offset, std::span<std::byte> out) const;
  // Asks the kernel to start reading [offset, offset + bytes) into the page cache without
  // waiting (posix_fadvise WILLNEED), so that a later read() finds it there. A hint: never
  // throws.
  void prefetch(uint64_t offset, uint64_t bytes) const noexcept;

 private:
  std::filesystem::path path_;
  core::Fd fd_;
  mutable core::Fd direct_fd_;  // closed for good once the filesystem refuses O_DIRECT
};

}  // namespace eplb::io
