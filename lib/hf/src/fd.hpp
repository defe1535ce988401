// Internal to lib/hf: the positioned reads and writes of the reader and the writer, with
// lib/hf's messages, over lib/fs's loops (eplb/fs/transfer.hpp). Every failure throws
// core::Error naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace eplb::hf::detail {

// Reads exactly out.size() bytes at `offset`; naming the file and `what` on an error (kIo)
// or an early end of file (kInput, as every truncated file: fs::failure_kind).
void pread_exact(int fd, std::span<std::byte> out, uint64_t offset,
                 const std::filesystem::path& path, const std::string& what);
// Writes all of `bytes` at `offset`; kIo naming the file on an error (a full disk: ENOSPC).
void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset,
                const std::filesystem::path& path);

}  // namespace eplb::hf::detail
