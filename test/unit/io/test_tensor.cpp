#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
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
        "tensor spec item 'w2:bf17:4': unknown dtype 'bf17' (expected bf16, fp16, fp32, "
        "fp8_e4m3 or fp8_e5m2)");
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
        "tensor spec item 'x:fp8:2': unknown dtype 'fp8' (expected bf16, fp16, fp32, fp8_e4m3 "
        "or fp8_e5m2)");
}

TEST_CASE("checksum is xxh3-64 with seed 0", "[io][tensor]") {
  CHECK(checksum({}) == 0x2d06800538d394c2ull);
  const std::string abc = "abc";
  const auto bytes = std::as_bytes(std::span(abc.data(), abc.size()));
  CHECK(checksum(bytes) == 0x78af5f94892f3950ull);  // XXH3_64bits("abc"), reference value
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
  }
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
