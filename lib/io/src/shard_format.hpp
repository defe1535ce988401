// Internal to lib/io: names and constants of the shard layout (docs/FORMAT.md), shared by
// the reader and the writer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"

namespace eplb::io::detail {

inline constexpr const char* kShardFormat = "eplb-checkpoint";
inline constexpr int32_t kShardVersion = 1;
inline constexpr const char* kLogicalIds = "logical_ids";
inline constexpr const char* kChecksumGroup = "xxh3";
inline constexpr const char* kDtypeAttr = "dtype";

// "layer_00003"
inline std::string layer_group_name(int32_t layer_idx) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "layer_%05d", static_cast<int>(layer_idx));
  return buf;
}

}  // namespace eplb::io::detail
