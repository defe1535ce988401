// Internal to lib/hf: the file-descriptor owner and the positioned reads and writes of the
// reader and the writer (core's loops, eplb/core/fd.hpp, with lib/hf's messages). Every
// failure throws core::Error naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "eplb/core/fd.hpp"

namespace eplb::hf::detail {

// The owner and the open of core (eplb/core/fd.hpp): an Fd closes quietly; the
// open follows symbolic links (Hugging Face caches are links into a blob store).
using core::Fd;
using core::open_regular_file;

uint64_t file_size(int fd, const std::filesystem::path& path);

// Reads exactly out.size() bytes at `offset`; kIo naming the file and `what` on an error or
// an early end of file.
void pread_exact(int fd, std::span<std::byte> out, uint64_t offset,
                 const std::filesystem::path& path, const std::string& what);
// Writes all of `bytes` at `offset`; kIo naming the file on an error (a full disk: ENOSPC).
void pwrite_all(int fd, std::span<const std::byte> bytes, uint64_t offset,
                const std::filesystem::path& path);

}  // namespace eplb::hf::detail
