// Bulk file I/O for `import` and `export` that bypasses the page cache (O_DIRECT): on a
// machine where buffered I/O costs seconds of CPU per GB (page-cache copies and reclaim),
// copying a checkpoint at disk speed needs the CPU to stay out of the way. Local; each
// object is used by one thread at a time.
//
// Where a filesystem refuses O_DIRECT (EINVAL on open or on the first transfer), both fall
// back to buffered I/O for that file, quietly: the bytes are the same.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <span>

namespace eplb::fs {

inline constexpr size_t kDirectAlign = 4096;  // offsets, lengths and buffers for O_DIRECT

// A heap buffer aligned to kDirectAlign; resize() does not keep the contents.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t bytes) { resize(bytes); }
  void resize(size_t bytes);
  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

// Positioned reads of one file: the 4 KiB-aligned range around [offset, offset + bytes) is
// read with O_DIRECT into this reader's buffer, and a view of the bytes asked for returned.
class DirectReader {
 public:
  // Throws core::Error(kIo) naming the file (kInput when it does not exist).
  explicit DirectReader(std::filesystem::path path);
  DirectReader(DirectReader&&) noexcept;
  DirectReader& operator=(DirectReader&&) noexcept;
  DirectReader(const DirectReader&) = delete;
  DirectReader& operator=(const DirectReader&) = delete;
  ~DirectReader();

  // Valid until the next call. Throws core::Error: kIo on a read error, kInput when the
  // file ends before offset + bytes.
  std::span<const std::byte> read(uint64_t offset, size_t bytes);
  const std::filesystem::path& path() const { return path_; }

 private:
  void open_buffered();
  std::filesystem::path path_;
  int fd_ = -1;
  bool direct_ = true;
  AlignedBytes buf_;
};

// The two chunks a SequentialWriter fills and writes in turn; kept by the caller so that
// consecutive files reuse them (fresh memory costs page faults).
struct WriteBuffers {
  AlignedBytes chunks[2];
};

// Writes a new file (which must not exist) of exactly `size` bytes front to back. append()
// copies into aligned chunks; a full chunk is written with O_DIRECT by a background task
// while the caller fills the other one. finish() writes the last chunk, sets the exact
// size, fdatasyncs and closes. Destroyed without finish(): waits for the pending write and
// closes, leaving an incomplete file (callers write into staging).
class SequentialWriter {
 public:
  static constexpr size_t kChunk = size_t{32} << 20;

  // `buffers` must outlive the writer and serve one writer at a time.
  SequentialWriter(std::filesystem::path path, uint64_t size, WriteBuffers& buffers);
  SequentialWriter(const SequentialWriter&) = delete;
  SequentialWriter& operator=(const SequentialWriter&) = delete;
  ~SequentialWriter();

  // Throws core::Error(kIo) (a failed earlier write surfaces here or in finish()).
  void append(std::span<const std::byte> bytes);
  void finish();
  uint64_t written() const { return offset_ + fill_; }

 private:
  void submit(bool last);
  void write_chunk(const std::byte* data, size_t bytes, uint64_t at);
  std::filesystem::path path_;
  uint64_t size_ = 0;
  int fd_ = -1;
  bool direct_ = true;
  AlignedBytes (&chunks_)[2];
  size_t chunk_ = 0;
  int current_ = 0;
  size_t fill_ = 0;      // bytes in the current chunk
  uint64_t offset_ = 0;  // file offset of the current chunk
  std::future<void> pending_;
  bool finished_ = false;
};

}  // namespace eplb::fs
