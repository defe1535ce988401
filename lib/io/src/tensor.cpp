#include "eplb/io/tensor.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <set>

#include "eplb/core/error.hpp"
#include "eplb/core/mix.hpp"
#include "tensor_rules.hpp"
#include "xxh3.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;

constexpr std::string_view kExample = "e.g. 'w13:bf16:256x128'";

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// Parses "256x128"; returns a problem ("" when fine).
std::string parse_dims(std::string_view text, DType dtype, std::vector<int64_t>& shape) {
  uint64_t row_bytes = dtype_size(dtype);
  for (std::string_view dim : split(text, 'x')) {
    int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(dim.data(), dim.data() + dim.size(), value);
    if (dim.empty() || ec != std::errc() || ptr != dim.data() + dim.size() || value <= 0) {
      return "dimension '" + std::string(dim) + "' is not a positive integer";
    }
    if (static_cast<uint64_t>(value) > detail::kMaxRowBytes / row_bytes) {
      return "one expert's tensor would exceed 1 TiB";
    }
    row_bytes *= static_cast<uint64_t>(value);
    shape.push_back(value);
  }
  return "";
}

// Parses one "name:dtype:dims" item, adding any problem to `problems`.
void parse_item(std::string_view item, std::set<std::string, std::less<>>& seen,
                core::ProblemList& problems, std::vector<TensorSpec>& specs) {
  const std::string where = "tensor spec item '" + std::string(item) + "': ";
  const std::vector<std::string_view> fields = split(item, ':');
  if (fields.size() != 3) {
    problems.add(where + "expected NAME:DTYPE:DIMS, " + std::string(kExample));
    return;
  }
  TensorSpec spec;
  spec.name = std::string(fields[0]);
  if (std::string problem = detail::tensor_name_problem(spec.name); !problem.empty()) {
    problems.add(where + problem);
    return;
  }
  if (!seen.insert(spec.name).second) {
    problems.add(where + "tensor '" + spec.name + "' is listed twice");
    return;
  }
  const std::optional<DType> dtype = parse_dtype(fields[1]);
  if (!dtype) {
    problems.add(where + "unknown dtype '" + std::string(fields[1]) + "' (expected one of " +
                 dtype_spellings() + ")");
    return;
  }
  spec.dtype = *dtype;
  if (std::string problem = parse_dims(fields[2], spec.dtype, spec.shape); !problem.empty()) {
    problems.add(where + problem);
    return;
  }
  specs.push_back(std::move(spec));
}

// Word i of the stream is core::mix64(key + i*gamma), so every word can be computed
// independently (the fill loop vectorizes).
using core::mix64;
constexpr uint64_t kGamma = core::kSplitmixGamma;

// Each turns 8 random bytes into 8 bytes of finite values of its dtype (lane-wise, so a
// prefix of the word is still whole elements).
inline uint64_t to_bf16x4(uint64_t w) {
  // Keep sign and 7 mantissa bits; exponent 127 - (0..7): magnitudes in [2^-7, 2).
  const uint64_t sub = (w >> 7) & 0x0007000700070007ull;
  return (w & 0x807F807F807F807Full) | ((0x007F007F007F007Full - sub) << 7);
}

inline uint64_t to_fp16x4(uint64_t w) {
  // Keep sign and 10 mantissa bits; exponent 15 - (0..7): magnitudes in [2^-7, 2).
  const uint64_t sub = (w >> 10) & 0x0007000700070007ull;
  return (w & 0x83FF83FF83FF83FFull) | ((0x000F000F000F000Full - sub) << 10);
}

inline uint64_t to_fp32x2(uint64_t w) {
  // 24 random bits per lane -> a float in [-2, 2), exactly representable.
  uint64_t out = 0;
  for (int lane = 0; lane < 2; ++lane) {
    const uint32_t bits = static_cast<uint32_t>(w >> (32 * lane)) >> 8;
    const float value = static_cast<float>(bits) * (4.0f / 16777216.0f) - 2.0f;
    uint32_t raw = 0;
    std::memcpy(&raw, &value, sizeof(raw));
    out |= uint64_t{raw} << (32 * lane);
  }
  return out;
}

inline uint64_t to_e4m3x8(uint64_t w) {
  // 0x7f and 0xff are NaN: a byte whose low 7 bits are all ones gets bit 0 cleared.
  const uint64_t low = w & 0x7F7F7F7F7F7F7F7Full;
  const uint64_t all_ones = ((low + 0x0101010101010101ull) & 0x8080808080808080ull) >> 7;
  return w ^ all_ones;
}

inline uint64_t to_e5m2x8(uint64_t w) {
  // Exponent bits 2..6 all ones is inf/NaN: clear bit 6 of such bytes.
  const uint64_t exp = w & 0x7C7C7C7C7C7C7C7Cull;
  const uint64_t all_ones = ((exp + 0x0404040404040404ull) & 0x8080808080808080ull) >> 1;
  return w ^ all_ones;
}

inline uint64_t to_fp64(uint64_t w) {
  // 53 random bits -> a double in [-2, 2), exactly representable.
  const double value = static_cast<double>(w >> 11) * (4.0 / 9007199254740992.0) - 2.0;
  uint64_t raw = 0;
  std::memcpy(&raw, &value, sizeof(raw));
  return raw;
}

inline uint64_t to_e8m0x8(uint64_t w) {
  // 0xff is NaN (the only special value): such bytes get bit 0 cleared.
  const uint64_t all_ones =
      (((w & 0x7F7F7F7F7F7F7F7Full) + 0x0101010101010101ull) & w & 0x8080808080808080ull) >> 7;
  return w ^ all_ones;
}

inline uint64_t to_boolx8(uint64_t w) { return w & 0x0101010101010101ull; }

// Integers: every bit pattern is a valid value.
inline uint64_t to_raw(uint64_t w) { return w; }

template <uint64_t (*Convert)(uint64_t)>
void fill_words(uint64_t key, std::span<std::byte> out) {
  const size_t num_words = out.size() / 8;
  std::byte* dst = out.data();
  for (size_t i = 0; i < num_words; ++i) {
    const uint64_t word = Convert(mix64(key + (i + 1) * kGamma));
    std::memcpy(dst + 8 * i, &word, 8);  // NOTE: bytes are defined little-endian
  }
  if (const size_t tail = out.size() % 8; tail != 0) {
    const uint64_t word = Convert(mix64(key + (num_words + 1) * kGamma));
    std::memcpy(dst + 8 * num_words, &word, tail);
  }
}

}  // namespace

namespace detail {

std::string tensor_name_problem(std::string_view name) {
  const auto allowed = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  if (name.empty()) return "the tensor name is empty";
  if (!std::all_of(name.begin(), name.end(), allowed)) {
    return "name '" + std::string(name) + "' may only contain letters, digits, '_', '.' and '-'";
  }
  if (name == "logical_ids" || name == "xxh3") {
    return "name '" + std::string(name) + "' is reserved by the shard format";
  }
  return "";
}

}  // namespace detail

namespace {

// One row per dtype: our spelling, the safetensors spelling, the element size.
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::string_view safetensors;
  size_t size;
};

constexpr DTypeInfo kDTypeInfo[] = {
    {DType::kBf16, "bf16", "BF16", 2},
    {DType::kFp16, "fp16", "F16", 2},
    {DType::kFp32, "fp32", "F32", 4},
    {DType::kFp8E4m3, "fp8_e4m3", "F8_E4M3", 1},
    {DType::kFp8E5m2, "fp8_e5m2", "F8_E5M2", 1},
    {DType::kBool, "bool", "BOOL", 1},
    {DType::kU8, "u8", "U8", 1},
    {DType::kI8, "i8", "I8", 1},
    {DType::kU16, "u16", "U16", 2},
    {DType::kI16, "i16", "I16", 2},
    {DType::kU32, "u32", "U32", 4},
    {DType::kI32, "i32", "I32", 4},
    {DType::kU64, "u64", "U64", 8},
    {DType::kI64, "i64", "I64", 8},
    {DType::kFp8E8m0, "fp8_e8m0", "F8_E8M0", 1},
    {DType::kFp64, "fp64", "F64", 8},
};
static_assert(std::size(kDTypeInfo) == std::size(kAllDTypes));

const DTypeInfo& info_of(DType dtype) {
  const auto idx = static_cast<size_t>(dtype);
  EPLB_ASSERT(idx < std::size(kDTypeInfo) && kDTypeInfo[idx].dtype == dtype);
  return kDTypeInfo[idx];
}

}  // namespace

size_t dtype_size(DType dtype) { return info_of(dtype).size; }

std::string_view to_string(DType dtype) { return info_of(dtype).name; }

std::optional<DType> parse_dtype(std::string_view text) {
  for (const DTypeInfo& info : kDTypeInfo) {
    if (text == info.name) return info.dtype;
  }
  return std::nullopt;
}

std::string dtype_spellings() {
  std::string out;
  for (const DTypeInfo& info : kDTypeInfo) {
    if (!out.empty()) out += ", ";
    out += info.name;
  }
  return out;
}

std::optional<DType> dtype_from_safetensors(std::string_view text) {
  for (const DTypeInfo& info : kDTypeInfo) {
    if (text == info.safetensors) return info.dtype;
  }
  return std::nullopt;
}

std::string_view to_safetensors(DType dtype) { return info_of(dtype).safetensors; }

size_t TensorSpec::row_bytes() const {
  size_t bytes = dtype_size(dtype);
  for (int64_t dim : shape) bytes *= static_cast<size_t>(dim);
  return bytes;
}

std::vector<TensorSpec> parse_tensor_specs(std::string_view text) {
  if (text.empty()) {
    throw Error(ErrorKind::kUsage,
                "tensor spec is empty; expected NAME:DTYPE:DIMS[,...], " + std::string(kExample));
  }
  core::ProblemList problems(ErrorKind::kUsage);
  std::set<std::string, std::less<>> seen;
  std::vector<TensorSpec> specs;
  for (std::string_view item : split(text, ',')) parse_item(item, seen, problems, specs);
  problems.throw_if_any();
  return specs;
}

std::string to_string(const std::vector<TensorSpec>& specs) {
  std::string out;
  for (const TensorSpec& spec : specs) {
    if (!out.empty()) out += ',';
    out += spec.name + ':' + std::string(to_string(spec.dtype)) + ':';
    for (size_t i = 0; i < spec.shape.size(); ++i) {
      out += (i ? "x" : "") + std::to_string(spec.shape[i]);
    }
  }
  return out;
}

size_t expert_bytes(const std::vector<TensorSpec>& specs) {
  size_t bytes = 0;
  for (const TensorSpec& spec : specs) bytes += spec.row_bytes();
  return bytes;
}

uint64_t checksum(std::span<const std::byte> bytes) {
  return detail::xxh3_64(bytes.data(), bytes.size());
}

uint64_t zero_checksum(size_t bytes) {
  static constexpr std::byte kZeros[64 << 10] = {};
  detail::Xxh3Stream stream;
  for (size_t done = 0; done < bytes;) {
    const size_t n = std::min(sizeof(kZeros), bytes - done);
    stream.update(kZeros, n);
    done += n;
  }
  return stream.digest();
}

void fill_synthetic(uint64_t seed, int32_t layer_idx, int32_t expert_id, const TensorSpec& spec,
                    std::span<std::byte> out) {
  EPLB_ASSERT(out.size() == spec.row_bytes());
  // The key hashes every input, so each (seed, layer, expert, name) gets its own stream.
  std::string header(16, '\0');
  std::memcpy(header.data(), &seed, 8);
  std::memcpy(header.data() + 8, &layer_idx, 4);
  std::memcpy(header.data() + 12, &expert_id, 4);
  header += spec.name;
  const uint64_t key = detail::xxh3_64(header.data(), header.size());
  switch (spec.dtype) {
    case DType::kBf16:
      return fill_words<to_bf16x4>(key, out);
    case DType::kFp16:
      return fill_words<to_fp16x4>(key, out);
    case DType::kFp32:
      return fill_words<to_fp32x2>(key, out);
    case DType::kFp8E4m3:
      return fill_words<to_e4m3x8>(key, out);
    case DType::kFp8E5m2:
      return fill_words<to_e5m2x8>(key, out);
    case DType::kBool:
      return fill_words<to_boolx8>(key, out);
    case DType::kFp8E8m0:
      return fill_words<to_e8m0x8>(key, out);
    case DType::kFp64:
      return fill_words<to_fp64>(key, out);
    case DType::kU8:
    case DType::kI8:
    case DType::kU16:
    case DType::kI16:
    case DType::kU32:
    case DType::kI32:
    case DType::kU64:
    case DType::kI64:
      return fill_words<to_raw>(key, out);
  }
}

}  // namespace eplb::io
