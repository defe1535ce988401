// Bulk file I/O that bypasses the page cache (O_DIRECT), done one way: on a machine where
// buffered I/O costs seconds of CPU per GB (page-cache copies and reclaim), moving a
// checkpoint at disk speed needs the CPU to stay out of the way. The aligned body of a
// transfer goes with O_DIRECT, its unaligned ends buffered; where a filesystem refuses
// O_DIRECT (EINVAL on open or on the first transfer) everything goes buffered from then
// on, quietly: the bytes are the same.
//
// Local; each object is used by one thread at a time unless it says otherwise.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <span>

#include "eplb/core/fd.hpp"

namespace eplb::fs {

// The O_DIRECT granularity: offsets, lengths and buffer addresses are multiples of it.
inline constexpr size_t kDirectAlign = 4096;
constexpr uint64_t align_down(uint64_t x) { return x / kDirectAlign * kDirectAlign; }
constexpr uint64_t align_up(uint64_t x) { return align_down(x + kDirectAlign - 1); }
// Transfers below this size go buffered: the page cache costs less than a direct round
// trip for them.
inline constexpr size_t kMinDirectBytes = size_t{64} << 10;

// False when EPLB_TEST_NO_O_DIRECT is set: tests force the buffered path with it (every
// filesystem of the test machines takes O_DIRECT).
bool direct_io_wanted();

// A heap buffer aligned to kDirectAlign (large ones to a huge page, with a transparent
// huge page hint); resize() does not keep the contents. The one aligned allocator.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t bytes) { resize(bytes); }
  // Throws core::Error(kIo) "cannot allocate N bytes".
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

// Reads the front of `out` at `offset` on a descriptor opened with O_DIRECT (offset,
// out.size() and address aligned) and returns how many bytes it read: all of them, or
// fewer where the file ends or the kernel stops short (the caller reads the rest
// buffered). nullopt, nothing read, when the filesystem refuses direct I/O for it (EINVAL
// on the first transfer). Other failures throw kIo "<errno text> (direct pread of N bytes
// at byte X)".
std::optional<size_t> pread_direct(int fd, std::span<std::byte> out, uint64_t offset);
// All of `bytes` at `offset` on a descriptor opened with O_DIRECT (bytes, offset and
// address aligned). False, nothing written, when the filesystem refuses direct I/O for it
// (EINVAL on the first transfer). Other failures throw kIo "<errno text> (direct pwrite of
// N bytes at byte X)" (a full disk: "No space left on device").
bool pwrite_direct(int fd, std::span<const std::byte> bytes, uint64_t offset);

// One file opened twice: buffered, and with O_DIRECT where wanted and allowed. Reads and
// writes send their aligned body direct and the rest buffered. read() may be called from
// several threads at once.
class DirectFile {
 public:
  DirectFile() = default;
  // Takes the buffered descriptor `fd` (opened by the caller, whose errors name what the
  // file is) and opens `path` again with `direct_flags | O_DIRECT` (O_RDONLY or
  // O_WRONLY) unless direct I/O is not wanted; a refusal leaves it buffered.
  DirectFile(core::Fd fd, const std::filesystem::path& path, int direct_flags);
  DirectFile(DirectFile&& other) noexcept;
  DirectFile& operator=(DirectFile&& other) noexcept;

  int fd() const { return fd_.get(); }
  bool valid() const { return !fd_.empty(); }
  // O_DIRECT is open and the filesystem has not refused it.
  bool direct() const;

  // Exactly out.size() bytes at `offset`: when `offset` and out.data() are aligned and
  // out.size() >= min_direct, the aligned front with O_DIRECT; the rest buffered. Throws
  // as pread_exact (fs/transfer.hpp): kInput when the file ends first. Returns the bytes
  // read with O_DIRECT.
  size_t read(uint64_t offset, std::span<std::byte> out, size_t min_direct = kMinDirectBytes) const;
  // All of `bytes` at `offset`: the aligned middle with O_DIRECT where its address is
  // aligned too and it holds at least min_direct bytes, the ends buffered. Throws as
  // pwrite_all or pwrite_direct.
  void write(uint64_t offset, std::span<const std::byte> bytes,
             size_t min_direct = kMinDirectBytes);
  // Closes both descriptors; a failed close of the buffered one (a deferred write error)
  // throws kIo "close: <errno text>". A no-op when not open.
  void close();

 private:
  bool direct_usable() const;
  core::Fd fd_;
  core::Fd direct_;
  mutable std::atomic<bool> refused_{false};
};

// Positioned reads of one file at any offset and length: the aligned range around them is
// read (fs::DirectFile) into this reader's buffer and a view of the bytes asked for
// returned.
class DirectReader {
 public:
  // Throws core::Error naming the file: kInput when it does not exist, kIo otherwise.
  explicit DirectReader(std::filesystem::path path);

  // Valid until the next call. Throws core::Error: kIo on a read error, kInput when the
  // file ends before offset + bytes.
  std::span<const std::byte> read(uint64_t offset, size_t bytes);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  DirectFile file_;
  uint64_t size_ = 0;
  AlignedBytes buf_;
};

// The two chunks a SequentialWriter fills and writes in turn; kept by the caller so that
// consecutive files reuse them (fresh memory costs page faults).
struct WriteBuffers {
  AlignedBytes chunks[2];
};

// Writes a new file (created as fs::create_new_file does: it must not exist) of exactly
// `size` bytes front to back. append() copies into aligned chunks; a full chunk is written
// with O_DIRECT by a background task while the caller fills the other one. finish()
// writes the last chunk, sets the exact size, fdatasyncs and closes. Destroyed without
// finish(): waits for the pending write and closes, leaving an incomplete file (callers
// write into staging).
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
  DirectFile file_;
  AlignedBytes (&chunks_)[2];
  size_t chunk_ = 0;
  int current_ = 0;
  size_t fill_ = 0;      // bytes in the current chunk
  uint64_t offset_ = 0;  // file offset of the current chunk
  std::future<void> pending_;
  bool finished_ = false;
};

}  // namespace eplb::fs
