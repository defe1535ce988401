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

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;

std::string quoted(const sfs::path& path) { return "'" + path.string() + "'"; }

constexpr uint64_t align_down(uint64_t x) { return x / kDirectAlign * kDirectAlign; }
constexpr uint64_t align_up(uint64_t x) { return align_down(x + kDirectAlign - 1); }

constexpr size_t kHugePage = size_t{2} << 20;

// Tests exercise the buffered fallback with EPLB_TEST_NO_O_DIRECT=1 (as the storage
// roofline does): every filesystem of this machine takes O_DIRECT.
int direct_flag() { return std::getenv("EPLB_TEST_NO_O_DIRECT") != nullptr ? 0 : O_DIRECT; }

// The largest single transfer (Linux moves at most 0x7ffff000 bytes per call).
constexpr size_t kMaxTransfer = size_t{1} << 30;

}  // namespace

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

DirectReader::DirectReader(sfs::path path) : path_(std::move(path)) {
  if (direct_flag() == 0) {
    open_buffered();
    return;
  }
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (fd_ < 0 && errno == EINVAL) {
    open_buffered();
    return;
  }
  if (fd_ < 0) {
    const int err = errno;
    throw Error(err == ENOENT ? ErrorKind::kInput : ErrorKind::kIo,
                "cannot open " + quoted(path_) + ": " + std::strerror(err));
  }
}

DirectReader::DirectReader(DirectReader&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      direct_(o.direct_),
      buf_(std::move(o.buf_)) {}

DirectReader& DirectReader::operator=(DirectReader&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    direct_ = o.direct_;
    buf_ = std::move(o.buf_);
  }
  return *this;
}

DirectReader::~DirectReader() {
  if (fd_ >= 0) ::close(fd_);
}

void DirectReader::open_buffered() {
  if (fd_ >= 0) ::close(fd_);
  direct_ = false;
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(err == ENOENT ? ErrorKind::kInput : ErrorKind::kIo,
                "cannot open " + quoted(path_) + ": " + std::strerror(err));
  }
}

std::span<const std::byte> DirectReader::read(uint64_t offset, size_t bytes) {
  const uint64_t begin = direct_ ? align_down(offset) : offset;
  const uint64_t end = direct_ ? align_up(offset + bytes) : offset + bytes;
  const auto want = static_cast<size_t>(end - begin);
  buf_.resize(want);
  size_t done = 0;
  while (done < want) {
    const size_t n = std::min(want - done, kMaxTransfer);
    const ssize_t got = ::pread(fd_, buf_.data() + done, n, static_cast<off_t>(begin + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && direct_) {
        open_buffered();
        return read(offset, bytes);
      }
      throw Error(ErrorKind::kIo, "cannot read " + std::to_string(bytes) + " bytes at byte " +
                                      std::to_string(offset) + " of " + quoted(path_) + ": " +
                                      std::strerror(errno));
    }
    if (got == 0) break;  // end of file
    done += static_cast<size_t>(got);
  }
  const auto skip = static_cast<size_t>(offset - begin);
  if (done < skip + bytes) {
    throw Error(ErrorKind::kInput, quoted(path_) + " ends at byte " + std::to_string(begin + done) +
                                       ", before byte " + std::to_string(offset + bytes) +
                                       " which it should hold");
  }
  return {buf_.data() + skip, bytes};
}

SequentialWriter::SequentialWriter(sfs::path path, uint64_t size, WriteBuffers& buffers)
    : path_(std::move(path)), size_(size), chunks_(buffers.chunks) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  fd_ = direct_flag() != 0 ? ::open(path_.c_str(), flags | O_DIRECT, 0644) : -1;
  if (fd_ < 0 && (errno == EINVAL || direct_flag() == 0)) {
    direct_ = false;
    fd_ = ::open(path_.c_str(), flags, 0644);
  }
  if (fd_ < 0) {
    const int err = errno;
    throw Error(ErrorKind::kIo,
                "cannot create " + quoted(path_) + ": " +
                    (err == EEXIST ? "the file already exists" : std::string(std::strerror(err))));
  }
  chunk_ = static_cast<size_t>(std::min<uint64_t>(kChunk, align_up(size)));
  chunks_[0].resize(chunk_);
  chunks_[1].resize(chunk_);
}

SequentialWriter::~SequentialWriter() {
  if (pending_.valid()) pending_.wait();
  if (fd_ >= 0) ::close(fd_);
}

void SequentialWriter::write_chunk(const std::byte* data, size_t bytes, uint64_t at) {
  size_t done = 0;
  while (done < bytes) {
    const size_t n = std::min(bytes - done, kMaxTransfer);
    const ssize_t put = ::pwrite(fd_, data + done, n, static_cast<off_t>(at + done));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0 && errno == EINVAL && direct_) {
      // Refused at the first transfer: the same file, buffered from here on.
      const int fd = ::open(path_.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) break;
      ::close(std::exchange(fd_, fd));
      direct_ = false;
      continue;
    }
    if (put <= 0) {
      throw Error(ErrorKind::kIo, "cannot write " + quoted(path_) + " at byte " +
                                      std::to_string(at + done) + ": " +
                                      (put < 0 ? std::strerror(errno) : "no progress"));
    }
    done += static_cast<size_t>(put);
  }
  if (done < bytes) {
    throw Error(ErrorKind::kIo, "cannot write " + quoted(path_) + ": " + std::strerror(errno));
  }
}

void SequentialWriter::submit(bool last) {
  if (pending_.valid()) pending_.get();  // rethrows the previous chunk's failure
  // O_DIRECT writes whole aligned blocks: the last one is padded, and finish() truncates.
  size_t bytes = fill_;
  if (last && direct_) {
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
  const int fd = std::exchange(fd_, -1);
  const auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorKind::kIo,
                std::string("cannot ") + what + " " + quoted(path_) + ": " + std::strerror(err));
  };
  if (::ftruncate(fd, static_cast<off_t>(size_)) != 0) fail("size");
  if (::fdatasync(fd) != 0) fail("flush to disk");
  if (::close(fd) != 0) {
    throw Error(ErrorKind::kIo, "cannot close " + quoted(path_) + ": " + std::strerror(errno));
  }
}

}  // namespace eplb::fs
