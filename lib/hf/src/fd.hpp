// Internal to lib/hf: a file-descriptor owner and the positioned-I/O loops shared by the
// reader and the writer. Every failure throws core::Error naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace eplb::hf::detail {

// Move-only owner of a file descriptor; the destructor closes quietly.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Opens `path` read-only, following symbolic links (Hugging Face caches are links into a
// blob store). kInput when it does not exist or is not a regular file (a FIFO is refused
// without blocking); kIo when it cannot be opened. `what` names it: "safetensors file".
Fd open_regular_file(const std::filesystem::path& path, std::string_view what);
uint64_t file_size(int fd, const std::filesystem::path& path);

// Reads exactly out.size() bytes at `offset`; kIo naming the file and `what` on an error or
// an early end of file.
void pread_exact(int fd, std::span<std::byte> out, uint64_t offset,
                 const std::filesystem::path& path, const std::string& what);
// Writes all of `bytes` at `offset`; kIo naming the file on an error (a full disk: ENOSPC).
void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset,
                const std::filesystem::path& path);

}  // namespace eplb::hf::detail
