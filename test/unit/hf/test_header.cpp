// parse_header: the safetensors header rules, one message per problem, each naming the file
// (the `source`) and the tensor (its JSON pointer).
#include <catch2/catch.hpp>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/hf/safetensors.hpp"
#include "hf_test_util.hpp"

namespace eplb::hf {
namespace {

using core::ErrorKind;
using test::error_text;

std::string parse_error(const std::string& json, uint64_t data_bytes, ErrorKind* kind = nullptr) {
  return error_text([&] { parse_header(json, data_bytes, "m.safetensors"); }, kind);
}

}  // namespace

TEST_CASE("a valid header: tensors in data order, absolute offsets", "[hf][header]") {
  // Keys in another order than the data, a scalar, a zero-size tensor, trailing padding.
  const std::string json = R"({"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]},)"
                           R"("__metadata__":{"format":"pt","note":"x"},)"
                           R"("a":{"shape":[2,2],"dtype":"F32","data_offsets":[0,16]},)"
                           R"("empty":{"dtype":"I64","shape":[0,5],"data_offsets":[28,28]},)"
                           R"("s":{"dtype":"U8","shape":[],"data_offsets":[28,29]}}   )";
  const Header header = parse_header(json, 29, "m.safetensors");
  CHECK(header.header_bytes == json.size());
  CHECK(header.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}});
  const uint64_t base = 8 + json.size();
  REQUIRE(header.tensors.size() == 4);
  CHECK(header.tensors[0] == TensorEntry{"a", io::DType::kFp32, {2, 2}, base, 16});
  CHECK(header.tensors[1] == TensorEntry{"b", io::DType::kBf16, {2, 3}, base + 16, 12});
  CHECK(header.tensors[2] == TensorEntry{"empty", io::DType::kI64, {0, 5}, base + 28, 0});
  CHECK(header.tensors[3] == TensorEntry{"s", io::DType::kU8, {}, base + 28, 1});
}

TEST_CASE("every safetensors dtype parses, with its element size", "[hf][header]") {
  for (io::DType dtype : io::kAllDTypes) {
    const std::string name(io::to_safetensors(dtype));
    const uint64_t bytes = 3 * io::dtype_size(dtype);
    const std::string json = R"({"t":{"dtype":")" + name + R"(","shape":[3],"data_offsets":[0,)" +
                             std::to_string(bytes) + "]}}";
    const Header header = parse_header(json, bytes, "m.safetensors");
    REQUIRE(header.tensors.size() == 1);
    CHECK(header.tensors[0].dtype == dtype);
    CHECK(header.tensors[0].num_bytes == bytes);
  }
}

TEST_CASE("an empty header and null metadata are valid", "[hf][header]") {
  CHECK(parse_header("{}", 0, "m").tensors.empty());
  CHECK(parse_header(R"({"__metadata__":null})", 0, "m").metadata.empty());
}

TEST_CASE("a header that is not JSON, not UTF-8 or not an object", "[hf][header]") {
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(parse_error(R"({"a":{"dtype":"F32",)", 0, &kind) ==
        "'m.safetensors': malformed JSON at line 1, column 21 (byte 21): syntax error while "
        "parsing object key - unexpected end of input; expected string literal");
  CHECK(kind == ErrorKind::kInput);
  CHECK_THAT(parse_error("{\"a\xff\":1}", 0),
             Catch::StartsWith("'m.safetensors': malformed JSON") &&
                 Catch::Contains("ill-formed UTF-8 byte"));
  CHECK(parse_error("[1,2]", 0) ==
        "'m.safetensors': the header must be a JSON object, got an array");
  CHECK_THAT(parse_error("", 0), Catch::StartsWith("'m.safetensors': malformed JSON"));
}

TEST_CASE("duplicate keys, at the top and inside a tensor", "[hf][header]") {
  CHECK(parse_error(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                    R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                    1) == "'m.safetensors' at /a: duplicate key \"a\"");
  CHECK(parse_error(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", 1) ==
        "'m.safetensors' at /a/dtype: duplicate key \"dtype\"");
}

TEST_CASE("unknown dtypes", "[hf][header]") {
  CHECK(parse_error(R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1) ==
        "'m.safetensors' at /w/dtype: unknown dtype \"F4\" (known: BF16, F16, F32, F8_E4M3, "
        "F8_E5M2, BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F8_E8M0, F64)");
  CHECK(parse_error(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4) ==
        "'m.safetensors' at /w/dtype: unknown dtype \"f32\" (known: BF16, F16, F32, F8_E4M3, "
        "F8_E5M2, BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F8_E8M0, F64)");
  CHECK(parse_error(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4) ==
        "'m.safetensors' at /w/dtype: dtype must be a string, got number 7");
}

TEST_CASE("dtype x shape must equal the byte length", "[hf][header]") {
  CHECK(parse_error(R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,16]}})", 16) ==
        "'m.safetensors' at /w/data_offsets: tensor 'w': dtype BF16 x shape [2,3] is 12 bytes, "
        "but data_offsets [0,16] hold 16");
  // Sizes that overflow 64 bits are caught, in elements and in bytes.
  CHECK(parse_error(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],)"
                    R"("data_offsets":[0,8]}})",
                    8) ==
        "'m.safetensors' at /w/shape: shape [4294967296,4294967296] has more than 2^64 elements");
  CHECK(parse_error(R"({"w":{"dtype":"F64","shape":[4294967296,536870912],)"
                    R"("data_offsets":[0,8]}})",
                    8) ==
        "'m.safetensors' at /w/data_offsets: tensor 'w': dtype F64 x shape "
        "[4294967296,536870912] is more than 2^64 bytes, but data_offsets [0,8] hold 8");
}

TEST_CASE("shapes must be arrays of non-negative integers", "[hf][header]") {
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[2,-1],"data_offsets":[0,2]}})", 2) ==
        "'m.safetensors' at /w/shape/1: dimension must be a non-negative integer, got number -1");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,2]}})", 2) ==
        "'m.safetensors' at /w/shape/0: dimension must be a non-negative integer, got number "
        "1.5");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":["2"],"data_offsets":[0,2]}})", 2) ==
        "'m.safetensors' at /w/shape/0: dimension must be a non-negative integer, got string "
        "\"2\"");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":2,"data_offsets":[0,2]}})", 2) ==
        "'m.safetensors' at /w/shape: shape must be an array of non-negative integers, got "
        "number 2");
}

TEST_CASE("offsets that overlap, leave a gap or lie out of bounds", "[hf][header]") {
  const auto t = [](const std::string& name, int begin, int end) {
    return "\"" + name + R"(":{"dtype":"U8","shape":[)" + std::to_string(end - begin) +
           R"(],"data_offsets":[)" + std::to_string(begin) + "," + std::to_string(end) + "]}";
  };
  CHECK(parse_error("{" + t("a", 0, 4) + "," + t("b", 2, 6) + "}", 6) ==
        "'m.safetensors' at /b/data_offsets: tensor 'b': data_offsets [2,6] overlap tensor 'a', "
        "which ends at 4");
  CHECK(parse_error("{" + t("a", 0, 4) + "," + t("b", 5, 6) + "}", 6) ==
        "'m.safetensors' at /b/data_offsets: tensor 'b': data_offsets [5,6] leave a gap: bytes "
        "[4,5) of the data section belong to no tensor");
  CHECK(parse_error("{" + t("a", 1, 4) + "}", 4) ==
        "'m.safetensors' at /a/data_offsets: tensor 'a': data_offsets [1,4] leave a gap: bytes "
        "[0,1) of the data section belong to no tensor");
  CHECK(parse_error("{" + t("a", 0, 4) + "," + t("b", 4, 9) + "}", 8) ==
        "'m.safetensors' at /b/data_offsets: tensor 'b': data_offsets [4,9] lie out of bounds: "
        "the data section has 8 bytes");
  CHECK(parse_error("{" + t("a", 0, 4) + "}", 7) ==
        "'m.safetensors': bytes [4,7) of the data section belong to no tensor (after tensor 'a')");
  CHECK(parse_error("{}", 3) ==
        "'m.safetensors': bytes [0,3) of the data section belong to no tensor");
  // Two tensors at the same place (both views of one buffer) overlap too.
  CHECK(parse_error("{" + t("a", 0, 4) + "," + t("b", 0, 4) + "}", 4) ==
        "'m.safetensors' at /b/data_offsets: tensor 'b': data_offsets [0,4] overlap tensor 'a', "
        "which ends at 4");
  // A zero-byte tensor between two others is fine.
  CHECK(parse_error("{" + t("a", 0, 4) + "," + t("z", 4, 4) + "," + t("b", 4, 6) + "}", 6) ==
        "no error");
}

TEST_CASE("data_offsets must be [begin, end]", "[hf][header]") {
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[3,2]}})", 3) ==
        "'m.safetensors' at /w/data_offsets: data_offsets [3,2] end before they begin");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", 1) ==
        "'m.safetensors' at /w/data_offsets: data_offsets must be [begin, end] with non-negative "
        "integers, got an array [0]");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", 1) ==
        "'m.safetensors' at /w/data_offsets: data_offsets must be [begin, end] with non-negative "
        "integers, got an array [-1,0]");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":"0-1"}})", 1) ==
        "'m.safetensors' at /w/data_offsets: data_offsets must be [begin, end] with non-negative "
        "integers, got string \"0-1\"");
}

TEST_CASE("missing and unknown fields, bad metadata, non-object tensors", "[hf][header]") {
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1]}})", 1) ==
        "'m.safetensors' at /w: tensor 'w' has no \"data_offsets\"");
  CHECK(parse_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}})", 1) ==
        "'m.safetensors' at /w/extra: unknown field \"extra\" of tensor 'w' (expected dtype, "
        "shape, data_offsets)");
  CHECK(parse_error(R"({"w":[1]})", 0) ==
        "'m.safetensors' at /w: tensor 'w' must be an object, got an array");
  CHECK(parse_error(R"({"__metadata__":{"format":1}})", 0) ==
        "'m.safetensors' at /__metadata__/format: metadata values must be strings, got number 1");
  CHECK(parse_error(R"({"__metadata__":"pt"})", 0) ==
        "'m.safetensors' at /__metadata__: expected an object of strings, got string \"pt\"");
}

TEST_CASE("every problem is reported, not only the first", "[hf][header]") {
  CHECK(parse_error(R"({"a":{"dtype":"F4","shape":[1],"data_offsets":[0,1]},)"
                    R"("b":{"dtype":"U8","shape":[-2],"data_offsets":[1,2]},)"
                    R"("c":{"dtype":"U16","shape":[2],"data_offsets":[2,5]}})",
                    5) ==
        "'m.safetensors' at /a/dtype: unknown dtype \"F4\" (known: BF16, F16, F32, F8_E4M3, "
        "F8_E5M2, BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F8_E8M0, F64)\n"
        "'m.safetensors' at /b/shape/0: dimension must be a non-negative integer, got number -2\n"
        "'m.safetensors' at /c/data_offsets: tensor 'c': dtype U16 x shape [2] is 4 bytes, but "
        "data_offsets [2,5] hold 3");
}

TEST_CASE("a tensor name with '/' is located unambiguously", "[hf][header]") {
  CHECK(parse_error(R"({"a/b~c":{"dtype":"X","shape":[1],"data_offsets":[0,1]}})", 1) ==
        "'m.safetensors' at /a~1b~0c/dtype: unknown dtype \"X\" (known: BF16, F16, F32, F8_E4M3, "
        "F8_E5M2, BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F8_E8M0, F64)");
}

}  // namespace eplb::hf
