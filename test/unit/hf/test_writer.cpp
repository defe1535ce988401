// make_raw_prefix and SafetensorsWriter: fresh headers as the safetensors library writes
// them, byte-exact copies of existing files, and the writer's refusals.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/hf/safetensors.hpp"
#include "hf_test_util.hpp"

namespace eplb::hf {
namespace {

using core::ErrorKind;
using test::error_text;
using test::TempDir;

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace

TEST_CASE("make_raw_prefix writes the library's key order and padding", "[hf][writer]") {
  std::vector<TensorEntry> tensors = {{"w", io::DType::kFp16, {2, 2}, 0, 0},
                                      {"b\"q", io::DType::kU8, {3}, 0, 0},
                                      {"s", io::DType::kFp64, {}, 0, 0}};
  const std::string raw = make_raw_prefix(tensors, {{"format", "pt"}});
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
      R"("b\"q":{"dtype":"U8","shape":[3],"data_offsets":[8,11]},)"
      R"("s":{"dtype":"F64","shape":[],"data_offsets":[11,19]}})";
  const size_t padded = (json.size() + 7) / 8 * 8;
  CHECK(raw == test::le64(padded) + json + std::string(padded - json.size(), ' '));
  CHECK(raw.size() % 8 == 0);
  CHECK(tensors[0].data_begin == raw.size());
  CHECK(tensors[1].data_begin == raw.size() + 8);
  CHECK(tensors[1].num_bytes == 3);
  CHECK(tensors[2].data_begin == raw.size() + 11);
  CHECK(tensors[2].num_bytes == 8);
  // And it parses back to the same entries.
  const Header header = parse_header(std::string_view(raw).substr(8), 19, "fresh");
  CHECK(header.tensors == tensors);
  CHECK(header.metadata.at("format") == "pt");

  // No metadata: no "__metadata__" key.
  std::vector<TensorEntry> one = {{"x", io::DType::kI32, {1}, 0, 0}};
  CHECK(make_raw_prefix(one, {}).substr(8, 9) == R"({"x":{"dt)");
  // Names must be unique and not the metadata key (an empty name is valid, as on reading).
  std::vector<TensorEntry> bad = {{"x", io::DType::kU8, {1}, 0, 0},
                                  {"x", io::DType::kU8, {1}, 0, 0},
                                  {"__metadata__", io::DType::kU8, {1}, 0, 0}};
  CHECK(error_text([&] { make_raw_prefix(bad, {}); }) ==
        "safetensors header: tensor 'x' is listed twice\n"
        "safetensors header: a tensor may not be named '__metadata__'");
}

TEST_CASE("make_raw_prefix matches the safetensors library's own test vectors", "[hf][writer]") {
  // From the library's tests (safetensors/src/tensor.rs): an empty file, an empty file with
  // metadata, and one F32 tensor whose header needs 7 spaces of padding.
  std::vector<TensorEntry> none;
  CHECK(make_raw_prefix(none, {}) == test::le64(8) + "{}      ");
  CHECK(make_raw_prefix(none, {{"framework", "pt"}}) ==
        test::le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
  std::vector<TensorEntry> attn = {{"attn0", io::DType::kFp32, {1, 1, 2, 3}, 0, 0}};
  CHECK(make_raw_prefix(attn, {}) ==
        test::le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
            "       ");
  CHECK(attn[0].data_begin == 80);
  CHECK(attn[0].num_bytes == 24);
}

TEST_CASE("writer: tensors written in any order read back", "[hf][writer]") {
  TempDir dir;
  std::vector<TensorEntry> tensors = {{"a", io::DType::kI64, {2}, 0, 0},
                                      {"b", io::DType::kBf16, {3}, 0, 0}};
  const std::string raw = make_raw_prefix(tensors, {});
  const std::string a = "0123456789abcdef", b = "ABCDEF";
  const auto path = dir / "out.safetensors";
  SafetensorsWriter writer(path, raw, 22);
  CHECK(writer.file_size() == raw.size() + 22);
  writer.write(tensors[1].data_begin + 2, as_bytes(b.substr(2)));
  writer.write(tensors[0].data_begin, as_bytes(a));
  writer.write(tensors[1].data_begin, as_bytes(b.substr(0, 2)));
  ErrorKind kind = ErrorKind::kInput;
  CHECK_THAT(error_text([&] { writer.write(raw.size() + 20, as_bytes(a)); }, &kind),
             Catch::StartsWith("internal error"));
  CHECK(kind == ErrorKind::kInternal);
  CHECK_THAT(error_text([&] { writer.write(4, as_bytes(b)); }),
             Catch::StartsWith("internal error"));  // inside the header
  writer.close();
  writer.close();  // idempotent

  CHECK(test::read_file(path) == raw + a + b);
  const SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.header().tensors == tensors);
}

TEST_CASE("writer reproduces an existing file byte for byte from its raw prefix", "[hf][writer]") {
  TempDir dir;
  // A header as another writer might lay it out: odd key order, spaces, no padding to 8.
  const std::string json = R"({ "b" : {"data_offsets":[4,6],"shape":[1],"dtype":"BF16"}, )"
                           R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]} })";
  const std::string original = test::safetensors_bytes(json, "wxyzAB");
  test::write_file(dir / "in.safetensors", original);
  const SafetensorsFile in = SafetensorsFile::open(dir / "in.safetensors");
  SafetensorsWriter out(dir / "out.safetensors", in.raw_prefix(),
                        in.file_size() - in.raw_prefix().size());
  for (const TensorEntry& t : in.header().tensors) {
    std::vector<std::byte> bytes(t.num_bytes);
    in.read(t, 0, bytes);
    out.write(t.data_begin, bytes);
  }
  out.close();
  CHECK(test::read_file(dir / "out.safetensors") == original);
}

TEST_CASE("writer refuses an existing path or link, and honours the umask", "[hf][writer]") {
  TempDir dir;
  const std::string raw = test::le64(8) + "{}      ";
  test::write_file(dir / "exists", "x");
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { SafetensorsWriter w(dir / "exists", raw, 0); }, &kind) ==
        "cannot create '" + (dir / "exists").string() + "': the file already exists");
  CHECK(kind == ErrorKind::kIo);
  CHECK(test::read_file(dir / "exists") == "x");
  // A dangling link is not followed: nothing is created at its target.
  std::filesystem::create_symlink(dir / "target", dir / "link");
  CHECK(error_text([&] { SafetensorsWriter w(dir / "link", raw, 0); }) ==
        "cannot create '" + (dir / "link").string() + "': the file already exists");
  CHECK_FALSE(std::filesystem::exists(dir / "target"));

  const mode_t old_mask = ::umask(077);
  {
    SafetensorsWriter w(dir / "private", raw, 0);
    w.close();
  }
  ::umask(022);
  {
    SafetensorsWriter w(dir / "public", raw, 0);
    w.close();
  }
  ::umask(old_mask);
  struct stat st {};
  REQUIRE(::stat((dir / "private").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((dir / "public").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  CHECK(SafetensorsFile::open(dir / "public").header().tensors.empty());
}

TEST_CASE("a writer destroyed without close leaves its file, does not throw", "[hf][writer]") {
  TempDir dir;
  {
    SafetensorsWriter w(dir / "partial", test::le64(8) + "{}      ", 4);
    SafetensorsWriter moved = std::move(w);
  }
  CHECK(std::filesystem::file_size(dir / "partial") == 20);
}

}  // namespace eplb::hf
