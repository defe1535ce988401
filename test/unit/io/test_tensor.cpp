#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string_view>
#include <tuple>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/io/tensor.hpp"
#include "io_test_util.hpp"

namespace eplb::io {
namespace {

using core::ErrorKind;
using test::error_text;

std::vector<std::byte> synthetic(uint64_t seed, int32_t layer, int32_t expert,
                                 const TensorSpec& spec) {
  std::vector<std::byte> out(spec.row_bytes());
  fill_synthetic(seed, layer, expert, spec, out);
  return out;
}

double half_value(uint16_t bits, int exp_bits, int mant_bits, int bias) {
  const int exp = (bits >> mant_bits) & ((1 << exp_bits) - 1);
  const int mant = bits & ((1 << mant_bits) - 1);
  const double sign = (bits >> (exp_bits + mant_bits)) & 1 ? -1.0 : 1.0;
  if (exp == (1 << exp_bits) - 1) return NAN;
  if (exp == 0) return sign * std::ldexp(mant, 1 - bias - mant_bits);
  return sign * std::ldexp(mant + (1 << mant_bits), exp - bias - mant_bits);
}

}  // namespace

TEST_CASE("dtype sizes and names", "[io][tensor]") {
  CHECK(dtype_size(DType::kBf16) == 2);
  CHECK(dtype_size(DType::kFp16) == 2);
  CHECK(dtype_size(DType::kFp32) == 4);
  CHECK(dtype_size(DType::kFp8E4m3) == 1);
  CHECK(dtype_size(DType::kFp8E5m2) == 1);
  for (DType d : {DType::kBf16, DType::kFp16, DType::kFp32, DType::kFp8E4m3, DType::kFp8E5m2}) {
    CHECK(parse_dtype(to_string(d)) == d);
  }
  CHECK_FALSE(parse_dtype("float32").has_value());
}

TEST_CASE("tensor specs parse and print", "[io][tensor]") {
  const std::string text = "w13:fp8_e4m3:256x128,w2:bf16:128x128,w13_scale.inv-1:fp32:2x1x3";
  const std::vector<TensorSpec> specs = parse_tensor_specs(text);
  REQUIRE(specs.size() == 3);
  CHECK(specs[0] == TensorSpec{"w13", DType::kFp8E4m3, {256, 128}});
  CHECK(specs[1] == TensorSpec{"w2", DType::kBf16, {128, 128}});
  CHECK(specs[2] == TensorSpec{"w13_scale.inv-1", DType::kFp32, {2, 1, 3}});
  CHECK(specs[0].row_bytes() == 256 * 128);
  CHECK(specs[1].row_bytes() == 128 * 128 * 2);
  CHECK(expert_bytes(specs) == 256 * 128 + 128 * 128 * 2 + 6 * 4);
  CHECK(to_string(specs) == text);
}

TEST_CASE("tensor spec errors quote the bad item", "[io][tensor]") {
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([] { parse_tensor_specs(""); }, &kind) ==
        "tensor spec is empty; expected NAME:DTYPE:DIMS[,...], e.g. 'w13:bf16:256x128'");
  CHECK(kind == ErrorKind::kUsage);
  CHECK(error_text([] { parse_tensor_specs("w13:bf16"); }) ==
        "tensor spec item 'w13:bf16': expected NAME:DTYPE:DIMS, e.g. 'w13:bf16:256x128'");
  CHECK(error_text([] { parse_tensor_specs("a b:bf16:4"); }) ==
        "tensor spec item 'a b:bf16:4': name 'a b' may only contain letters, digits, '_', "
        "'.' and '-'");
  CHECK(error_text([] { parse_tensor_specs("xxh3:bf16:4"); }) ==
        "tensor spec item 'xxh3:bf16:4': name 'xxh3' is reserved by the shard format");
  CHECK(error_text([] { parse_tensor_specs("logical_ids:bf16:4"); }) ==
        "tensor spec item 'logical_ids:bf16:4': name 'logical_ids' is reserved by the shard "
        "format");
  CHECK(error_text([] { parse_tensor_specs("w2:bf17:4"); }) ==
        "tensor spec item 'w2:bf17:4': unknown dtype 'bf17' (expected one of bf16, fp16, "
        "fp32, fp8_e4m3, fp8_e5m2, bool, u8, i8, u16, i16, u32, i32, u64, i64, fp8_e8m0, "
        "fp64)");
  CHECK(error_text([] { parse_tensor_specs("w2:bf16:4x0"); }) ==
        "tensor spec item 'w2:bf16:4x0': dimension '0' is not a positive integer");
  CHECK(error_text([] { parse_tensor_specs("w2:bf16:4x"); }) ==
        "tensor spec item 'w2:bf16:4x': dimension '' is not a positive integer");
  CHECK(error_text([] { parse_tensor_specs("w2:bf16:1048576x1048576"); }) ==
        "tensor spec item 'w2:bf16:1048576x1048576': one expert's tensor would exceed 1 TiB");
  // Every problem is reported, not only the first.
  CHECK(error_text([] { parse_tensor_specs("w2:bf16:4,w2:fp32:8,,x:fp8:2"); }) ==
        "tensor spec item 'w2:fp32:8': tensor 'w2' is listed twice\n"
        "tensor spec item '': expected NAME:DTYPE:DIMS, e.g. 'w13:bf16:256x128'\n"
        "tensor spec item 'x:fp8:2': unknown dtype 'fp8' (expected one of bf16, fp16, fp32, "
        "fp8_e4m3, fp8_e5m2, bool, u8, i8, u16, i16, u32, i32, u64, i64, fp8_e8m0, fp64)");
}

TEST_CASE("every dtype has one spelling of ours and one of safetensors", "[io][tensor]") {
  // name, safetensors name, bytes: the table of docs/FORMAT.md.
  const std::tuple<DType, std::string_view, std::string_view, size_t> table[] = {
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
      {DType::kFp64, "fp64", "F64", 8}};
  REQUIRE(std::size(table) == std::size(kAllDTypes));
  for (size_t i = 0; i < std::size(table); ++i) {
    const auto& [dtype, name, st_name, size] = table[i];
    CAPTURE(name);
    CHECK(kAllDTypes[i] == dtype);
    CHECK(to_string(dtype) == name);
    CHECK(parse_dtype(name) == dtype);
    CHECK(to_safetensors(dtype) == st_name);
    CHECK(dtype_from_safetensors(st_name) == dtype);
    CHECK(dtype_size(dtype) == size);
    // The two spellings are not interchangeable.
    CHECK_FALSE(parse_dtype(st_name).has_value());
    CHECK_FALSE(dtype_from_safetensors(name).has_value());
  }
  // Case-sensitive, and safetensors dtypes we do not carry are unknown.
  for (std::string_view text : {"f32", "Bf16", "F4", "F6_E2M3", "C64", "", "F32 "}) {
    CHECK_FALSE(dtype_from_safetensors(text).has_value());
  }
}

TEST_CASE("checksum is xxh3-64 with seed 0", "[io][tensor]") {
  CHECK(checksum({}) == 0x2d06800538d394c2ull);
  const std::string abc = "abc";
  const auto bytes = std::as_bytes(std::span(abc.data(), abc.size()));
  CHECK(checksum(bytes) == 0x78af5f94892f3950ull);  // XXH3_64bits("abc"), reference value
}

TEST_CASE("zero_checksum is the checksum of that many zero bytes", "[io][tensor]") {
  // Around the 64 KiB pieces it is fed in, and a multi-MiB row.
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{240}, size_t{65535}, size_t{65536},
                       size_t{65537}, size_t{3} << 20}) {
    const std::vector<std::byte> zeros(bytes);
    CHECK(zero_checksum(bytes) == checksum(zeros));
  }
}

TEST_CASE("synthetic weights are deterministic and independent", "[io][tensor]") {
  const TensorSpec spec{"w13", DType::kBf16, {64, 33}};
  const auto base = synthetic(7, 3, 11, spec);
  CHECK(synthetic(7, 3, 11, spec) == base);
  CHECK(synthetic(8, 3, 11, spec) != base);  // seed
  CHECK(synthetic(7, 4, 11, spec) != base);  // layer
  CHECK(synthetic(7, 3, 12, spec) != base);  // logical expert id
  TensorSpec renamed = spec;
  renamed.name = "w2";
  CHECK(synthetic(7, 3, 11, renamed) != base);
  // Layer and expert are not interchangeable.
  CHECK(synthetic(7, 11, 3, spec) != base);
}

TEST_CASE("synthetic values are finite for every dtype", "[io][tensor]") {
  // 4099 elements: odd sizes exercise the partial last word.
  for (uint64_t seed = 0; seed < 4; ++seed) {
    const auto bf16 = synthetic(seed, 0, 1, {"a", DType::kBf16, {4099}});
    const auto fp16 = synthetic(seed, 0, 1, {"a", DType::kFp16, {4099}});
    const auto fp32 = synthetic(seed, 0, 1, {"a", DType::kFp32, {4099}});
    const auto e4m3 = synthetic(seed, 0, 1, {"a", DType::kFp8E4m3, {4099}});
    const auto e5m2 = synthetic(seed, 0, 1, {"a", DType::kFp8E5m2, {4099}});
    for (size_t i = 0; i < 4099; ++i) {
      uint16_t b = 0, h = 0;
      float f = 0;
      std::memcpy(&b, bf16.data() + 2 * i, 2);
      std::memcpy(&h, fp16.data() + 2 * i, 2);
      std::memcpy(&f, fp32.data() + 4 * i, 4);
      const double bv = half_value(b, 8, 7, 127), hv = half_value(h, 5, 10, 15);
      REQUIRE((std::isfinite(bv) && std::abs(bv) < 2.0));
      REQUIRE((std::isfinite(hv) && std::abs(hv) < 2.0));
      REQUIRE((std::isfinite(f) && f >= -2.0f && f < 2.0f));
      const auto e4 = static_cast<uint8_t>(e4m3[i]), e5 = static_cast<uint8_t>(e5m2[i]);
      REQUIRE((e4 & 0x7f) != 0x7f);
      REQUIRE((e5 & 0x7c) != 0x7c);
    }
    const auto fp64 = synthetic(seed, 0, 1, {"a", DType::kFp64, {4099}});
    const auto e8m0 = synthetic(seed, 0, 1, {"a", DType::kFp8E8m0, {4099}});
    const auto flags = synthetic(seed, 0, 1, {"a", DType::kBool, {4099}});
    for (size_t i = 0; i < 4099; ++i) {
      double d = 0;
      std::memcpy(&d, fp64.data() + 8 * i, 8);
      REQUIRE((std::isfinite(d) && d >= -2.0 && d < 2.0));
      REQUIRE(static_cast<uint8_t>(e8m0[i]) != 0xff);  // the NaN of e8m0
      REQUIRE(static_cast<uint8_t>(flags[i]) <= 1);
    }
  }
}

TEST_CASE("synthetic bytes of the new dtypes are not degenerate", "[io][tensor]") {
  const size_t n = 1 << 14;
  for (DType dtype : kAllDTypes) {
    CAPTURE(to_string(dtype));
    const auto bytes = synthetic(5, 1, 2, {"t", dtype, {static_cast<int64_t>(n)}});
    REQUIRE(bytes.size() == n * dtype_size(dtype));
    std::vector<int> seen(256, 0);
    for (std::byte b : bytes) seen[static_cast<uint8_t>(b)] = 1;
    int distinct = 0;
    for (int s : seen) distinct += s;
    if (dtype == DType::kBool) {
      CHECK(distinct == 2);
    } else if (dtype == DType::kFp8E8m0 || dtype == DType::kFp8E4m3) {
      CHECK(distinct >= 254);
    } else {
      CHECK(distinct >= 200);
    }
  }
  // Integers use every bit pattern: the top bit of an i64 is set about half the time.
  const auto i64 = synthetic(5, 1, 2, {"t", DType::kI64, {4096}});
  int negative = 0;
  for (size_t i = 0; i < 4096; ++i) {
    int64_t v = 0;
    std::memcpy(&v, i64.data() + 8 * i, 8);
    negative += v < 0;
  }
  CHECK((negative > 1800 && negative < 2300));
}

TEST_CASE("synthetic bytes cover the value range", "[io][tensor]") {
  // Guards against a degenerate stream (all zero, constant words) that would still be finite.
  const auto e4m3 = synthetic(1, 2, 3, {"a", DType::kFp8E4m3, {1 << 16}});
  std::vector<int> seen(256, 0);
  for (std::byte b : e4m3) seen[static_cast<uint8_t>(b)] = 1;
  int distinct = 0;
  for (int s : seen) distinct += s;
  CHECK(distinct == 254);  // every byte but the two NaNs
  const auto fp32 = synthetic(1, 2, 3, {"a", DType::kFp32, {1 << 14}});
  double sum = 0;
  for (size_t i = 0; i < fp32.size() / 4; ++i) {
    float f = 0;
    std::memcpy(&f, fp32.data() + 4 * i, 4);
    sum += f;
  }
  CHECK(std::abs(sum / (1 << 14)) < 0.05);  // uniform on [-2, 2): mean near 0
}

}  // namespace eplb::io
