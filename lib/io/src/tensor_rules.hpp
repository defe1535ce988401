// Internal to lib/io: the tensor naming and size rules, shared by the SPEC parser and the
// manifest parser so that both accept exactly the same tensors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace eplb::io::detail {

// Rows above this size are refused: it keeps every size computation far from overflow.
inline constexpr uint64_t kMaxRowBytes = uint64_t{1} << 40;

// Why `name` cannot name a tensor, or "" when it can: [A-Za-z0-9_.-]+ and not one of the
// names the shard format uses itself ("logical_ids", "xxh3").
std::string tensor_name_problem(std::string_view name);

}  // namespace eplb::io::detail
