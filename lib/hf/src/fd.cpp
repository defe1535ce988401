// Positioned I/O for lib/hf, with its messages (fd.hpp).
#include "fd.hpp"

#include <cstring>

#include "eplb/core/error.hpp"
#include "eplb/fs/transfer.hpp"

namespace eplb::hf::detail {
namespace {

using core::Error;
using core::ErrorKind;
using core::quoted;

}  // namespace

void pread_exact(int fd, std::span<std::byte> out, uint64_t offset,
                 const std::filesystem::path& path, const std::string& what) {
  const fs::Transfer t = fs::pread_full(fd, out, offset);
  if (t.complete) return;
  if (t.error != 0) {
    throw Error(fs::failure_kind(t), quoted(path) + ": cannot read " + what + " at byte " +
                                         std::to_string(offset + t.done) + ": " +
                                         std::strerror(t.error));
  }
  throw Error(fs::failure_kind(t),
              quoted(path) + ": cannot read " + what + ": the file ends at byte " +
                  std::to_string(offset + t.done) + ", before the " + std::to_string(out.size()) +
                  " bytes at " + std::to_string(offset) + " (did it shrink after opening?)");
}

void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset,
                const std::filesystem::path& path) {
  const fs::Transfer t = fs::pwrite_full(fd, bytes, offset);
  if (t.complete) return;
  // A pwrite of a non-empty range that moved nothing: reported, not retried forever.
  throw Error(ErrorKind::kIo, "cannot write " + quoted(path) + " at byte " +
                                  std::to_string(offset + t.done) + ": " +
                                  (t.error != 0 ? std::strerror(t.error) : "no progress"));
}

}  // namespace eplb::hf::detail
