// Files written by an independent writer (write_reference.py: Python with json, struct and
// numpy, laid out as the safetensors library lays them out) read back value for value, and
// make_raw_prefix rebuilds their headers byte for byte.
#include <catch2/catch.hpp>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "eplb/hf/safetensors.hpp"
#include "hf_test_util.hpp"

namespace eplb::hf {
namespace {

constexpr const char* kWriter = EPLB_TEST_SOURCE_DIR "/unit/hf/write_reference.py";

std::string hex(const std::vector<std::byte>& bytes) {
  std::string out;
  char buf[3];
  for (std::byte b : bytes) {
    std::snprintf(buf, sizeof(buf), "%02x", std::to_integer<unsigned>(b));
    out += buf;
  }
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  if (shape.empty()) return "scalar";
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "x" : "") + std::to_string(shape[i]);
  return out;
}

}  // namespace

TEST_CASE("files of an independent writer read back exactly, every dtype", "[hf][reference]") {
  test::TempDir dir;
  const std::string command =
      std::string("/usr/bin/python3 ") + kWriter + " " + dir.path().string() + " 2>&1";
  REQUIRE(std::system(command.c_str()) == 0);

  const Index index = load_index(dir.path());
  CHECK(index.files == std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                "model-00002-of-00002.safetensors"});
  const ModelFiles files(index);
  std::istringstream expected(test::read_file(dir / "expected.txt"));
  std::string line;
  size_t num_checked = 0;
  uint64_t total = 0;
  while (std::getline(expected, line)) {
    // A zero-size tensor has an empty HEX field.
    std::istringstream fields(line);
    std::string name, dtype, shape, bytes;
    fields >> name >> dtype >> shape >> bytes;
    CAPTURE(line);
    const TensorEntry& entry = files.entry(name);
    CHECK(io::to_safetensors(entry.dtype) == dtype);
    CHECK(shape_text(entry.shape) == shape);
    std::vector<std::byte> data(entry.num_bytes);
    files.file_of(name).read(entry, 0, data);
    CHECK(hex(data) == bytes);
    total += entry.num_bytes;
    ++num_checked;
  }
  CHECK(num_checked == std::size(io::kAllDTypes) + 1);
  CHECK(num_checked == index.weight_map.size());
  CHECK(index.index_metadata == nlohmann::json{{"total_size", total}});

  // The same tensors, in the same order, give the same header bytes.
  for (const SafetensorsFile& file : files.files()) {
    std::vector<TensorEntry> tensors = file.header().tensors;
    CHECK(make_raw_prefix(tensors, file.header().metadata) == file.raw_prefix());
    CHECK(tensors == file.header().tensors);
  }
}

}  // namespace eplb::hf
