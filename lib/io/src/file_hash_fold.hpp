// Internal to lib/io: the XXH3-64 of a whole file, folded into its writing instead of a
// read of the file afterwards (the manifest's "xxh3", docs/FORMAT.md).
//
// A shard is mostly data regions (its contiguous datasets, offsets fixed at creation)
// that the writer holds in memory when it writes them; the rest (HDF5's metadata,
// alignment padding) is small and already in the file. XXH3 is a stream hash, so bytes
// must be fed in file order: the fold feeds each region as the cursor reaches it, reading
// the gaps before it from the file, and keeps copies of small regions written ahead of the
// cursor. finish() hashes the tail and then re-reads every gap it fed: if any changed
// since (HDF5 rewrote metadata at close), or a large region came ahead of the cursor, the
// fold gives up (nullopt) and the caller hashes the file by reading it. Local; one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace eplb::io::detail {

class FileHashFold {
 public:
  struct Region {
    uint64_t offset = 0;
    uint64_t bytes = 0;
  };
  // Reads exactly out.size() bytes of the file at `offset` (throws on failure).
  using ReadFile = std::function<void(uint64_t offset, std::span<std::byte> out)>;

  // `regions`: the data regions, non-overlapping, any order. Regions up to `keep_bytes`
  // written ahead of the cursor are copied until it reaches them; larger ones end the fold.
  FileHashFold(std::vector<Region> regions, ReadFile read, size_t keep_bytes = size_t{1} << 20);
  ~FileHashFold();
  FileHashFold(const FileHashFold&) = delete;
  FileHashFold& operator=(const FileHashFold&) = delete;

  // The file will hold `bytes` at `offset` once complete, outside every region, though it
  // holds others now (HDF5 clears its superblock's "open for writing" flags at close):
  // they are hashed as they will be, and finish() checks them with the other gap bytes.
  void will_hold(uint64_t offset, std::span<const std::byte> bytes);
  // Region `region_idx` (index into the constructor's list) holds `bytes`, as written.
  // Each region once.
  void written(size_t region_idx, std::span<const std::byte> bytes);
  // The file is complete and `file_size` bytes long: the whole file's XXH3-64, or nullopt
  // when the fold failed (see above).
  std::optional<uint64_t> finish(uint64_t file_size);
  bool failed() const { return failed_; }

 private:
  void feed_gap(uint64_t end);
  void advance();
  struct State;
  std::vector<Region> regions_;    // sorted by offset
  std::vector<size_t> sorted_of_;  // constructor index -> index in regions_
  ReadFile read_;
  size_t keep_bytes_;
  std::unique_ptr<State> state_;
  size_t next_ = 0;                                // the next region (in regions_) to feed
  uint64_t cursor_ = 0;                            // bytes fed so far
  std::map<size_t, std::vector<std::byte>> kept_;  // sorted index -> bytes, ahead of the cursor
  std::vector<Region> gaps_;                       // fed from the file, to check at finish
  bool failed_ = false;
  std::map<uint64_t, std::byte> final_bytes_;  // will_hold()
};

}  // namespace eplb::io::detail
