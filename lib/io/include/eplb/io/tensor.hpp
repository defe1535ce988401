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

// Every dtype of the safetensors format. The first five are the original ones of format
// version 1; the rest were added with Hugging Face import (docs/FORMAT.md, dtype table).
// Bytes are never converted: a dtype only says how many bytes an element has and how the
// HDF5 dataset is typed.
enum class DType {
  kBf16,
  kFp16,
  kFp32,
  kFp8E4m3,
  kFp8E5m2,
  kBool,  // one byte, 0 or 1
  kU8,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kU64,
  kI64,
  kFp8E8m0,  // OCP MX scale: 8 exponent bits, no sign, no mantissa
  kFp64,
};

// Every dtype, in enumerator order (for loops and tests).
inline constexpr DType kAllDTypes[] = {
    DType::kBf16, DType::kFp16, DType::kFp32,    DType::kFp8E4m3, DType::kFp8E5m2, DType::kBool,
    DType::kU8,   DType::kI8,   DType::kU16,     DType::kI16,     DType::kU32,     DType::kI32,
    DType::kU64,  DType::kI64,  DType::kFp8E8m0, DType::kFp64};

size_t dtype_size(DType dtype);
// Our spelling (CLI tensor specs, manifest, the HDF5 `dtype` attribute): "bf16", "fp16",
// "fp32", "fp8_e4m3", "fp8_e5m2", "bool", "u8", "i8", "u16", "i16", "u32", "i32", "u64",
// "i64", "fp8_e8m0", "fp64".
std::string_view to_string(DType dtype);
std::optional<DType> parse_dtype(std::string_view text);
// The comma-separated list of every spelling, for error messages.
std::string dtype_spellings();

// The safetensors spelling, exactly as in a safetensors header: "BF16", "F16", "F32",
// "F8_E4M3", "F8_E5M2", "BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64",
// "F8_E8M0", "F64". dtype_from_safetensors is case-sensitive and returns nullopt for any
// other text (including safetensors dtypes we do not carry, such as "F4" or "C64").
std::optional<DType> dtype_from_safetensors(std::string_view text);
std::string_view to_safetensors(DType dtype);

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
// checksum() of `bytes` zero bytes (an empty slot's row), without a buffer that large.
uint64_t zero_checksum(size_t bytes);

// Deterministic synthetic weights: the bytes of (layer, logical expert, tensor) depend on
// (seed, layer_idx, expert_id, tensor name) alone, so replicas are identical and any
// output can be checked independently. Values are finite for every dtype.
void fill_synthetic(uint64_t seed, int32_t layer_idx, int32_t expert_id, const TensorSpec& spec,
                    std::span<std::byte> out);

}  // namespace eplb::io
