// One EP rank's HDF5 shard (docs/FORMAT.md). Local: no communication.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "eplb/fs/free_space.hpp"
#include "eplb/io/tensor.hpp"

namespace eplb::io {

struct ShardInfo {
  int32_t ep_rank = 0;
  int32_t ep_size = 0;
  int32_t num_layers = 0;
  int32_t num_slots_per_rank = 0;
  std::vector<TensorSpec> tensors;  // the fixed tensor order
  // The identifier of the checkpoint this shard belongs to (also in its manifest); empty
  // in shards written before identifiers existed.
  std::string checkpoint_id;
  bool operator==(const ShardInfo&) const = default;
};

// "rank-00003.h5"
std::string shard_file_name(int32_t ep_rank);

// The bytes of the arrays of a checkpoint of `ep_size` shards: every row, its xxh3 and its
// logical id. HDF5's metadata (a few KiB a shard) comes on top: a lower bound of what the
// checkpoint takes on disk. Local.
uint64_t checkpoint_data_bytes(const std::vector<TensorSpec>& tensors, int32_t ep_size,
                               int32_t num_layers, int32_t num_slots_per_rank);
// What writing that checkpoint takes at least, once its staging directory exists: its data
// bytes, and its files (the shards, the manifest and its temporary file), for
// fs::require_free_space.
fs::SpaceNeeded checkpoint_space(const std::vector<TensorSpec>& tensors, int32_t ep_size,
                                 int32_t num_layers, int32_t num_slots_per_rank);

// Read-only view of a shard. Opening validates the root attributes and that every layer
// group has the expected datasets with the expected types and shapes; problems throw
// core::Error(kInput) (content) or kIo (cannot open), naming the file, layer and tensor.
class ShardReader {
 public:
  explicit ShardReader(const std::filesystem::path& path);
  ~ShardReader();
  ShardReader(ShardReader&&) noexcept;
  ShardReader& operator=(ShardReader&&) noexcept;
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const ShardInfo& info() const;
  const std::filesystem::path& path() const;
  std::vector<int32_t> read_logical_ids(int32_t layer_idx) const;
  // Recorded xxh3 per slot for one tensor.
  std::vector<uint64_t> read_checksums(int32_t layer_idx, size_t tensor_idx) const;
  // All rows of one tensor of one layer, [num_slots_per_rank, row_bytes], bytes as stored.
  // Rows of a contiguous dataset that starts on a 4 KiB boundary of the file go around the
  // page cache (O_DIRECT) when `out` is 4 KiB-aligned too and the filesystem allows it;
  // otherwise buffered. The bytes are the same either way. Safe to call from several
  // threads at once.
  void read_tensor(int32_t layer_idx, size_t tensor_idx, std::span<std::byte> out) const;
  // Where that tensor's rows lie in the file: [num_slots_per_rank, row_bytes] bytes from the
  // returned offset, row after row, when its dataset is contiguous and allocated at the
  // size its shape says; nullopt otherwise (chunked or compact datasets of other tools:
  // use read_tensor). For callers that read rows themselves (`export`, with O_DIRECT).
  std::optional<uint64_t> tensor_offset(int32_t layer_idx, size_t tensor_idx) const;
  // Bytes read_tensor() has read with O_DIRECT so far (for tests and reports).
  uint64_t bytes_read_direct() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Creates a new shard (the file must not exist). Layers may be written in any order but
// each exactly once. close() flushes, fsyncs and closes, and throws if any of it fails;
// a writer destroyed without close() leaves an incomplete file (staging is discarded).
// Rows are written with O_DIRECT where the filesystem takes it and the caller's rows are
// 4 KiB-aligned in memory (datasets are 4 KiB-aligned in the file), buffered otherwise;
// written in layer order, the whole file's xxh3 is computed on the way (file_xxh3()).
class ShardWriter {
 public:
  ShardWriter(const std::filesystem::path& path, const ShardInfo& info);
  ~ShardWriter();
  ShardWriter(ShardWriter&&) noexcept;
  ShardWriter& operator=(ShardWriter&&) noexcept;
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // rows[t] holds tensor t's rows, [num_slots_per_rank, row_bytes]; checksums[t] one per row.
  void write_layer(int32_t layer_idx, std::span<const int32_t> logical_ids,
                   std::span<const std::span<const std::byte>> rows,
                   std::span<const std::vector<uint64_t>> checksums);
  void close();
  // After close(): the XXH3-64 of the whole file (the manifest's "xxh3"), folded into the
  // writes, or nullopt when it could not be (layers out of order, metadata rewritten at
  // close): then hash the file (describe_file).
  std::optional<uint64_t> file_xxh3() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace eplb::io
