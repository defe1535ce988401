// Bulk file I/O outside the page cache (eplb/fs/direct_io.hpp).
#include "eplb/fs/direct_io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "eplb/core/error.hpp"
#include "eplb/fs/create.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/fs/transfer.hpp"

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;
using core::quoted;

constexpr size_t kHugePage = size_t{2} << 20;

std::string range_text(const char* call, size_t bytes, uint64_t offset) {
  return std::string(call) + " of " + std::to_string(bytes) + " bytes at byte " +
         std::to_string(offset);
}

bool aligned(uint64_t offset, const void* address) {
  return offset % kDirectAlign == 0 && reinterpret_cast<uintptr_t>(address) % kDirectAlign == 0;
}

}  // namespace

bool direct_io_wanted() { return std::getenv("EPLB_TEST_NO_O_DIRECT") == nullptr; }

void AlignedBytes::Free::operator()(std::byte* p) const { std::free(p); }

void AlignedBytes::resize(size_t bytes) {
  if (bytes <= size_ && data_) return;
  // Large buffers in transparent huge pages: on a VM a 4 KiB page fault costs microseconds,
  // and faulting in a fresh 32 MiB buffer page by page costs more than the copy into it.
  const size_t align = bytes >= kHugePage ? kHugePage : kDirectAlign;
  const size_t rounded = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) {
    throw Error(ErrorKind::kIo, "cannot allocate " + std::to_string(rounded) + " bytes");
  }
  if (align == kHugePage) ::madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure is fine
  data_.reset(static_cast<std::byte*>(p));
  size_ = rounded;
}

std::optional<size_t> pread_direct(int fd, std::span<std::byte> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    const size_t want = std::min(out.size() - done, kMaxIoChunk);
    const ssize_t n = ::pread(fd, out.data() + done, want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && done == 0) return std::nullopt;
    if (n < 0) {
      throw Error(ErrorKind::kIo, std::string(std::strerror(errno)) + " (" +
                                      range_text("direct pread", want, offset + done) + ")");
    }
    done += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < want) break;  // end of file, or short: the caller goes on
  }
  return done;
}

bool pwrite_direct(int fd, std::span<const std::byte> bytes, uint64_t offset) {
  if (bytes.empty()) return true;
  const size_t first = std::min(bytes.size(), kMaxIoChunk);
  ssize_t n = 0;
  do {
    n = ::pwrite(fd, bytes.data(), first, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EINVAL) return false;
  if (n <= 0) {
    const std::string cause = n < 0 ? std::strerror(errno) : "no progress";
    throw Error(ErrorKind::kIo, cause + " (" + range_text("direct pwrite", first, offset) + ")");
  }
  // A short direct write leaves an aligned remainder only when it stopped on a block; the
  // rest goes through pwrite_all, which reports any failure with its position.
  pwrite_all(fd, bytes.subspan(static_cast<size_t>(n)), offset + static_cast<uint64_t>(n));
  return true;
}

DirectFile::DirectFile(core::Fd fd, const sfs::path& path, int direct_flags) : fd_(std::move(fd)) {
  // Refused (EINVAL: tmpfs before Linux 6.6, some network filesystems): all buffered.
  if (direct_io_wanted()) {
    direct_ = core::Fd(::open(path.c_str(), direct_flags | O_DIRECT | O_CLOEXEC));
  }
}

DirectFile::DirectFile(DirectFile&& other) noexcept
    : fd_(std::move(other.fd_)),
      direct_(std::move(other.direct_)),
      refused_(other.refused_.load(std::memory_order_relaxed)) {}

DirectFile& DirectFile::operator=(DirectFile&& other) noexcept {
  if (this != &other) {
    fd_ = std::move(other.fd_);
    direct_ = std::move(other.direct_);
    refused_.store(other.refused_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  return *this;
}

bool DirectFile::direct() const {
  return !direct_.empty() && !refused_.load(std::memory_order_relaxed);
}

size_t DirectFile::read(uint64_t offset, std::span<std::byte> out, size_t min_direct) const {
  size_t done = 0;
  if (direct() && aligned(offset, out.data()) && out.size() >= std::max(min_direct, kDirectAlign)) {
    const auto body = static_cast<size_t>(align_down(out.size()));
    const std::optional<size_t> got = pread_direct(direct_.get(), out.first(body), offset);
    if (got) {
      done = *got;
    } else {
      refused_.store(true, std::memory_order_relaxed);
    }
  }
  pread_exact(fd_.get(), out.subspan(done), offset + done);
  return done;
}

void DirectFile::write(uint64_t offset, std::span<const std::byte> bytes, size_t min_direct) {
  const auto address = reinterpret_cast<uintptr_t>(bytes.data());
  const uint64_t head = (kDirectAlign - offset % kDirectAlign) % kDirectAlign;
  if (direct() && bytes.size() >= std::max(min_direct, kDirectAlign) + head &&
      (address + head) % kDirectAlign == 0) {
    const auto body = static_cast<size_t>(align_down(bytes.size() - head));
    if (pwrite_direct(direct_.get(), bytes.subspan(head, body), offset + head)) {
      pwrite_all(fd_.get(), bytes.first(head), offset);
      pwrite_all(fd_.get(), bytes.subspan(head + body), offset + head + body);
      return;
    }
    refused_.store(true, std::memory_order_relaxed);
  }
  pwrite_all(fd_.get(), bytes, offset);
}

void DirectFile::close() {
  direct_.reset();
  close_checked(fd_);
}

DirectReader::DirectReader(sfs::path path) : path_(std::move(path)) {
  core::Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.empty()) {
    const int err = errno;
    throw Error(err == ENOENT ? ErrorKind::kInput : ErrorKind::kIo,
                "cannot open " + quoted(path_) + ": " + std::strerror(err));
  }
  size_ = file_size(fd.get(), path_);
  file_ = DirectFile(std::move(fd), path_, O_RDONLY);
}

std::span<const std::byte> DirectReader::read(uint64_t offset, size_t bytes) {
  if (offset + bytes > size_) {
    throw Error(ErrorKind::kInput, quoted(path_) + " ends at byte " + std::to_string(size_) +
                                       ", before byte " + std::to_string(offset + bytes) +
                                       " which it should hold");
  }
  // The aligned blocks around the bytes asked for, up to the end of the file.
  const uint64_t begin = align_down(offset);
  const uint64_t end = std::min(align_up(offset + bytes), size_);
  const auto want = static_cast<size_t>(end - begin);
  buf_.resize(want);
  try {
    file_.read(begin, {buf_.data(), want}, kDirectAlign);
  } catch (const Error& e) {
    throw core::with_prefix(e, "cannot read " + std::to_string(bytes) + " bytes at byte " +
                                   std::to_string(offset) + " of " + quoted(path_) + ": ");
  }
  return {buf_.data() + (offset - begin), bytes};
}

SequentialWriter::SequentialWriter(sfs::path path, uint64_t size, WriteBuffers& buffers)
    : path_(std::move(path)), size_(size), chunks_(buffers.chunks) {
  file_ =
      DirectFile(create_new_file(AT_FDCWD, path_, O_WRONLY, 0644), path_, O_WRONLY | O_NOFOLLOW);
  chunk_ = static_cast<size_t>(std::min<uint64_t>(kChunk, align_up(size)));
  chunks_[0].resize(chunk_);
  chunks_[1].resize(chunk_);
}

SequentialWriter::~SequentialWriter() {
  if (pending_.valid()) pending_.wait();
}

void SequentialWriter::write_chunk(const std::byte* data, size_t bytes, uint64_t at) {
  try {
    file_.write(at, {data, bytes}, kDirectAlign);
  } catch (const Error& e) {
    throw core::with_prefix(e, "cannot write " + quoted(path_) + ": ");
  }
}

void SequentialWriter::submit(bool last) {
  if (pending_.valid()) pending_.get();  // rethrows the previous chunk's failure
  // O_DIRECT writes whole aligned blocks: the last one is padded, and finish() truncates.
  size_t bytes = fill_;
  if (last && file_.direct()) {
    const auto padded = static_cast<size_t>(align_up(fill_));
    std::memset(chunks_[current_].data() + fill_, 0, padded - fill_);
    bytes = padded;
  }
  const std::byte* data = chunks_[current_].data();
  const uint64_t at = offset_;
  pending_ =
      std::async(std::launch::async, [this, data, bytes, at] { write_chunk(data, bytes, at); });
  offset_ += fill_;
  fill_ = 0;
  current_ = 1 - current_;
}

void SequentialWriter::append(std::span<const std::byte> bytes) {
  EPLB_ASSERT(!finished_ && offset_ + fill_ + bytes.size() <= size_);
  while (!bytes.empty()) {
    const size_t n = std::min(chunk_ - fill_, bytes.size());
    std::memcpy(chunks_[current_].data() + fill_, bytes.data(), n);
    fill_ += n;
    bytes = bytes.subspan(n);
    if (fill_ == chunk_) submit(false);
  }
}

void SequentialWriter::finish() {
  EPLB_ASSERT(!finished_);
  EPLB_ASSERT(offset_ + fill_ == size_);
  finished_ = true;
  if (fill_ > 0) submit(true);
  if (pending_.valid()) pending_.get();
  if (::ftruncate(file_.fd(), static_cast<off_t>(size_)) != 0) {
    throw Error(ErrorKind::kIo, "cannot size " + quoted(path_) + ": " + std::strerror(errno));
  }
  sync_data(file_.fd(), path_);
  try {
    file_.close();
  } catch (const Error& e) {
    throw core::with_prefix(e, "cannot close " + quoted(path_) + ": ");
  }
}

}  // namespace eplb::fs
