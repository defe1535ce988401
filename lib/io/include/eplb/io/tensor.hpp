// Per-expert tensors: names, dtypes, shapes, and the byte layout of an expert.
// Local and pure (no HDF5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace eplb::io {

enum class DType { kBf16, kFp16, kFp32, kFp8E4m3, kFp8E5m2 };

size_t dtype_size(DType dtype);
std::string_view to_string(DType dtype);  // "bf16", "fp16", "fp32", "fp8_e4m3", "fp8_e5m2"
std::optional<DType> parse_dtype(std::string_view text);

struct TensorSpec {
  std::string name;  // [A-Za-z0-9_.-]+, not "logical_ids" or "xxh3"
  DType dtype = DType::kFp32;
  std::vector<int64_t> shape;  // per-expert shape (without the leading slot axis)
  size_t row_bytes() const;    // bytes of one expert's tensor
  bool operator==(const TensorSpec&) const = default;
};

// "w13:fp8_e4m3:256x128,w2:bf16:128x128": throws core::Error(kUsage) naming the bad item.
std::vector<TensorSpec> parse_tensor_specs(std::string_view text);
std::string to_string(const std::vector<TensorSpec>& specs);

// Bytes of one expert: all its tensors. Message layout is expert-major, then tensor order.
size_t expert_bytes(const std::vector<TensorSpec>& specs);

// xxh3-64 (seed 0) of a row's bytes: the per-slot, per-tensor checksum of the format.
uint64_t checksum(std::span<const std::byte> bytes);

// Deterministic synthetic weights: the bytes of (layer, logical expert, tensor) depend on
// (seed, layer_idx, expert_id, tensor name) alone, so replicas are identical and any
// output can be checked independently. Values are finite for every dtype.
void fill_synthetic(uint64_t seed, int32_t layer_idx, int32_t expert_id, const TensorSpec& spec,
                    std::span<std::byte> out);

}  // namespace eplb::io
