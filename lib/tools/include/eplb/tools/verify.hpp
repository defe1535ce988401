// Re-reading a checkpoint and checking every slot.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include "eplb/runtime/mpi.hpp"

namespace eplb::tools {

struct VerifyOptions {
  std::filesystem::path checkpoint;
  std::optional<std::filesystem::path> placement;  // must equal the manifest's if given
  std::optional<int32_t> ep_size;
  std::optional<uint64_t> seed;  // also compare every slot with `generate --seed`'s bytes
};

struct VerifyReport {
  int32_t num_files = 0;
  long long slots_checked = 0;
  long long bytes_checked = 0;
  double seconds = 0;
};

// Collective: process p checks the shards of EP ranks p, p + size, ... Checks each file's
// size and xxh3 against the manifest, the shard's attributes and logical ids against the
// placement, every slot's bytes against its recorded checksum, empty slots are zeros, and
// all slots holding one logical expert in a layer hold the same bytes (across ranks).
// Throws core::Error(kVerify) on every rank, after printing every problem, if any fails.
VerifyReport verify(const runtime::MpiSession& session, const VerifyOptions& options);

}  // namespace eplb::tools
