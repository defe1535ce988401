// SafetensorsFile (open, positioned reads), model directories (index + files) and the
// writer, on files built byte by byte in the test.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/hf/safetensors.hpp"
#include "hf_test_util.hpp"

namespace eplb::hf {
namespace {

using core::ErrorKind;
using test::error_text;
using test::safetensors_bytes;
using test::TempDir;

// Two tensors: "a" F32 [2] = {1.5, -2}, "b" U8 [3] = {1, 2, 3}.
const std::string kJson =
    R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
    R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";

std::string data_ab() {
  const float a[2] = {1.5f, -2.0f};
  std::string data(reinterpret_cast<const char*>(a), 8);
  return data + "\x01\x02\x03";
}

std::string read_all(const SafetensorsFile& file, const TensorEntry& t) {
  std::string out(t.num_bytes, '\0');
  file.read(t, 0, std::as_writable_bytes(std::span(out.data(), out.size())));
  return out;
}

// A file holding one U8 tensor per name, each of one byte (its index).
std::string one_byte_tensors(const std::vector<std::string>& names) {
  std::string json = "{", data;
  for (size_t i = 0; i < names.size(); ++i) {
    json += (i ? "," : "") + std::string("\"") + names[i] + R"(":{"dtype":"U8","shape":[1],)" +
            R"("data_offsets":[)" + std::to_string(i) + "," + std::to_string(i + 1) + "]}";
    data += static_cast<char>(i);
  }
  return safetensors_bytes(json + "}", data);
}

}  // namespace

TEST_CASE("open reads the header only; read returns the tensors' bytes", "[hf][file]") {
  TempDir dir;
  const auto path = dir / "m.safetensors";
  const std::string bytes = safetensors_bytes(kJson, data_ab());
  test::write_file(path, bytes);

  const SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.path() == path);
  CHECK(file.file_size() == bytes.size());
  CHECK(file.raw_prefix() == bytes.substr(0, 8 + kJson.size()));
  CHECK(file.header().metadata.at("format") == "pt");
  const TensorEntry* a = file.find("a");
  const TensorEntry* b = file.find("b");
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(file.find("c") == nullptr);
  CHECK(a->data_begin == 8 + kJson.size());
  CHECK(read_all(file, *a) == data_ab().substr(0, 8));
  CHECK(read_all(file, *b) == "\x01\x02\x03");
  // A part of a tensor, at an offset inside it.
  std::string part(2, '\0');
  file.read(*b, 1, std::as_writable_bytes(std::span(part.data(), 2)));
  CHECK(part == "\x02\x03");
  // Past the tensor's end is a bug of the caller.
  ErrorKind kind = ErrorKind::kInput;
  CHECK_THAT(
      error_text([&] { file.read(*b, 2, std::as_writable_bytes(std::span(part.data(), 2))); },
                 &kind),
      Catch::StartsWith("internal error"));
  CHECK(kind == ErrorKind::kInternal);

  // Moved, it still reads (the entries stay valid).
  SafetensorsFile moved = std::move(const_cast<SafetensorsFile&>(file));
  CHECK(read_all(moved, *moved.find("b")) == "\x01\x02\x03");
}

// A file that ends before what its header describes is truncated: invalid input (exit 2), as
// every truncated file the tool reads (fs::failure_kind; it was an I/O error here before
// issue 22 made the kind one everywhere).
TEST_CASE("a file that shrank after open is truncated input, naming file and tensor",
          "[hf][file]") {
  TempDir dir;
  const auto path = dir / "m.safetensors";
  test::write_file(path, safetensors_bytes(kJson, data_ab()));
  const SafetensorsFile file = SafetensorsFile::open(path);
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(8 + kJson.size() + 9)) == 0);
  ErrorKind kind = ErrorKind::kInput;
  CHECK(error_text([&] { read_all(file, *file.find("b")); }, &kind) ==
        "'" + path.string() + "': cannot read tensor 'b': the file ends at byte " +
            std::to_string(8 + kJson.size() + 9) + ", before the 3 bytes at " +
            std::to_string(8 + kJson.size() + 8) + " (did it shrink after opening?)");
  CHECK(kind == ErrorKind::kInput);
}

TEST_CASE("header length beyond the file, above the limit, or a file too short", "[hf][file]") {
  TempDir dir;
  const auto path = dir / "m.safetensors";
  const std::string p = "'" + path.string() + "': ";
  ErrorKind kind = ErrorKind::kInternal;

  test::write_file(path, test::le64(1000) + "{}");
  CHECK(error_text([&] { SafetensorsFile::open(path); }, &kind) ==
        p + "header length 1000 lies beyond the end of the file (10 bytes)");
  CHECK(kind == ErrorKind::kInput);

  test::write_file(path, test::le64(100'000'001) + "{}");
  CHECK(error_text([&] { SafetensorsFile::open(path); }) ==
        p + "header length 100000001 is above the limit of 100000000 bytes");
  test::write_file(path, test::le64(UINT64_MAX) + "{}");
  CHECK(error_text([&] { SafetensorsFile::open(path); }) ==
        p + "header length 18446744073709551615 is above the limit of 100000000 bytes");

  test::write_file(path, std::string("\x02\x00\x00", 3));
  CHECK(error_text([&] { SafetensorsFile::open(path); }) ==
        p + "the file is 3 bytes, too short for a safetensors file (it starts with an 8-byte "
            "header length)");

  // The header's own problems name the file too.
  test::write_file(path, safetensors_bytes(kJson, data_ab() + "zz"));
  CHECK(error_text([&] { SafetensorsFile::open(path); }) ==
        "'" + path.string() +
            "': bytes [11,13) of the data section belong to no tensor (after tensor 'b')");
}

TEST_CASE("open refuses what is not a regular file", "[hf][file]") {
  TempDir dir;
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { SafetensorsFile::open(dir / "none.safetensors"); }, &kind) ==
        "'" + (dir / "none.safetensors").string() + "': safetensors file does not exist");
  CHECK(kind == ErrorKind::kInput);
  CHECK(error_text([&] { SafetensorsFile::open(dir.path()); }) ==
        "'" + dir.path().string() +
            "': safetensors file must be a regular file, but it is a directory");
  const auto fifo = dir / "fifo.safetensors";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(error_text([&] { SafetensorsFile::open(fifo); }) ==
        "'" + fifo.string() + "': safetensors file must be a regular file, but it is a FIFO");
}

TEST_CASE("a sharded model directory: index, files, lookup", "[hf][index]") {
  TempDir dir;
  test::write_file(dir / "model-00001-of-00002.safetensors", one_byte_tensors({"x", "y"}));
  test::write_file(dir / "model-00002-of-00002.safetensors", one_byte_tensors({"z"}));
  test::write_file(dir / "model.safetensors.index.json",
                   R"({"metadata":{"total_size":3},"weight_map":{)"
                   R"("z":"model-00002-of-00002.safetensors",)"
                   R"("x":"model-00001-of-00002.safetensors",)"
                   R"("y":"model-00001-of-00002.safetensors"}})");
  const Index index = load_index(dir.path());
  CHECK(index.dir == dir.path());
  CHECK(index.files == std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                "model-00002-of-00002.safetensors"});
  CHECK(index.weight_map.size() == 3);
  CHECK(index.weight_map.at("z") == "model-00002-of-00002.safetensors");
  CHECK(index.index_metadata == nlohmann::json{{"total_size", 3}});

  const ModelFiles files(index);
  CHECK(files.files().size() == 2);
  CHECK(files.contains("y"));
  CHECK_FALSE(files.contains("w"));
  CHECK(files.file_of("z").path() == dir / "model-00002-of-00002.safetensors");
  const TensorEntry& y = files.entry("y");
  std::string byte(1, '\0');
  files.file_of("y").read(y, 0, std::as_writable_bytes(std::span(byte.data(), 1)));
  CHECK(byte == std::string(1, '\x01'));
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { files.entry("w"); }, &kind) ==
        "'" + dir.path().string() + "': the checkpoint has no tensor 'w'");
  CHECK(kind == ErrorKind::kInput);
}

TEST_CASE("a single model.safetensors without an index", "[hf][index]") {
  TempDir dir;
  test::write_file(dir / "model.safetensors", one_byte_tensors({"b", "a"}));
  const Index index = load_index(dir.path());
  CHECK(index.files == std::vector<std::string>{"model.safetensors"});
  CHECK(index.weight_map ==
        std::map<std::string, std::string>{{"a", "model.safetensors"}, {"b", "model.safetensors"}});
  CHECK(index.index_metadata.is_null());
  CHECK(ModelFiles(index).entry("a").num_bytes == 1);
}

TEST_CASE("index problems: missing files, absent tensors, tensors in two files", "[hf][index]") {
  TempDir dir;
  const std::string idx = "'" + (dir / "model.safetensors.index.json").string() + "'";
  const std::string d = "'" + dir.path().string() + "'";
  test::write_file(dir / "one.safetensors", one_byte_tensors({"x", "y"}));
  test::write_file(dir / "two.safetensors", one_byte_tensors({"y", "z"}));
  test::write_file(dir / "model.safetensors.index.json",
                   R"({"weight_map":{"x":"one.safetensors","y":"two.safetensors",)"
                   R"("q":"one.safetensors","z":"two.safetensors","w":"gone.safetensors"}})");
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { load_index(dir.path()); }, &kind) ==
        idx +
            ": names file 'gone.safetensors' (for 1 tensors, e.g. 'w'), which does not exist "
            "in " +
            d + "\n" + idx +
            " at /weight_map/q: tensor 'q' is not in 'one.safetensors' (which holds 2 tensors)\n" +
            d + ": tensor 'y' is in two files, 'one.safetensors' and 'two.safetensors'");
  CHECK(kind == ErrorKind::kInput);
}

TEST_CASE("index problems: its JSON, file names, a bad file", "[hf][index]") {
  TempDir dir;
  const auto index_path = dir / "model.safetensors.index.json";
  const std::string idx = "'" + index_path.string() + "'";
  test::write_file(index_path, R"({"weight_map":{"a":"x.safetensors","a":"x.safetensors"}})");
  CHECK(error_text([&] { load_index(dir.path()); }) ==
        idx + " at /weight_map/a: duplicate key \"a\"");
  test::write_file(index_path, R"({"metadata":{}})");
  CHECK(error_text([&] { load_index(dir.path()); }) == idx + ": \"weight_map\" is missing");
  test::write_file(index_path, R"({"weight_map":{"a":"../x.safetensors","b":7,"c":""}})");
  CHECK(error_text([&] { load_index(dir.path()); }) ==
        idx +
            " at /weight_map/a: file name \"../x.safetensors\" must be a plain file name in the "
            "model directory\n" +
            idx + " at /weight_map/b: expected a file name, got number 7\n" + idx +
            " at /weight_map/c: the file name is empty");
  test::write_file(index_path, R"({"weight_map":{}})");
  CHECK(error_text([&] { load_index(dir.path()); }) == idx + " at /weight_map: names no tensor");
  // A broken file: its own message, naming it.
  test::write_file(index_path, R"({"weight_map":{"a":"bad.safetensors"}})");
  test::write_file(dir / "bad.safetensors", test::le64(50) + "{}");
  CHECK(error_text([&] { load_index(dir.path()); }) ==
        "'" + (dir / "bad.safetensors").string() +
            "': header length 50 lies beyond the end of the file (10 bytes)");
}

TEST_CASE("a directory that is not a Hugging Face checkpoint", "[hf][index]") {
  TempDir dir;
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { load_index(dir.path()); }, &kind) ==
        "'" + dir.path().string() +
            "': neither model.safetensors.index.json nor model.safetensors is there: not a "
            "Hugging Face safetensors checkpoint");
  CHECK(kind == ErrorKind::kInput);
  CHECK(error_text([&] { load_index(dir / "none"); }) ==
        "'" + (dir / "none").string() + "': Hugging Face model directory does not exist");
}

}  // namespace eplb::hf
