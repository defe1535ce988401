#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <thread>

#include "eplb/core/error.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/io/shard_layout.hpp"
#include "io_test_util.hpp"

namespace eplb::io {
namespace {

using core::ErrorKind;
using test::error_text;
using test::TempDir;

constexpr const char* kTool = EPLB_TEST_SOURCE_DIR "/unit/io/h5py_tool.py";

ShardInfo sample_info() {
  // Every dtype, several shapes, odd byte counts for the 1-byte types.
  return ShardInfo{1,
                   4,
                   3,
                   3,
                   parse_tensor_specs("a:bf16:3x5,b:fp16:7,c:fp32:2x2x2,d:fp8_e4m3:9,"
                                      "e:fp8_e5m2:4x3,f:bool:5,g:u8:3,h:i8:7,i:u16:3,j:i16:5,"
                                      "k:u32:3,l:i32:1x3,m:u64:2,n:i64:3,o:fp8_e8m0:11,p:fp64:3"),
                   "0123456789abcdef0123456789abcdef"};
}

// The content of one layer: logical ids and synthetic rows, with their checksums.
struct Layer {
  std::vector<int32_t> ids;
  std::vector<std::vector<std::byte>> rows;  // per tensor, all slots
  std::vector<std::vector<uint64_t>> sums;   // per tensor, per slot
};

Layer make_layer(const ShardInfo& info, int32_t layer_idx) {
  Layer layer;
  for (int32_t row = 0; row < info.num_slots_per_rank; ++row) {
    layer.ids.push_back(row == 1 ? -1 : layer_idx * 10 + row);
  }
  for (const TensorSpec& spec : info.tensors) {
    const size_t row_bytes = spec.row_bytes();
    std::vector<std::byte> rows(row_bytes * layer.ids.size());
    std::vector<uint64_t> sums;
    for (size_t row = 0; row < layer.ids.size(); ++row) {
      std::span<std::byte> out(rows.data() + row * row_bytes, row_bytes);
      fill_synthetic(42, layer_idx, layer.ids[row], spec, out);
      sums.push_back(checksum(out));
    }
    layer.rows.push_back(std::move(rows));
    layer.sums.push_back(std::move(sums));
  }
  return layer;
}

void write_layer(ShardWriter& writer, int32_t layer_idx, const Layer& layer) {
  std::vector<std::span<const std::byte>> rows(layer.rows.begin(), layer.rows.end());
  writer.write_layer(layer_idx, layer.ids, rows, layer.sums);
}

void write_shard(const std::filesystem::path& path, const ShardInfo& info, bool reverse = false) {
  ShardWriter writer(path, info);
  for (int32_t i = 0; i < info.num_layers; ++i) {
    const int32_t layer = reverse ? info.num_layers - 1 - i : i;
    write_layer(writer, layer, make_layer(info, layer));
  }
  writer.close();
}

// Every layer of `reader` holds what write_shard() wrote for `info`: ids, rows, checksums.
void check_contents(const ShardReader& reader, const ShardInfo& info) {
  for (int32_t layer_idx = 0; layer_idx < info.num_layers; ++layer_idx) {
    const Layer expected = make_layer(info, layer_idx);
    CHECK(reader.read_logical_ids(layer_idx) == expected.ids);
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      std::vector<std::byte> rows(expected.rows[t].size());
      reader.read_tensor(layer_idx, t, rows);
      CHECK(rows == expected.rows[t]);
      CHECK(reader.read_checksums(layer_idx, t) == expected.sums[t]);
    }
  }
}

void h5py(const std::string& args) {
  int status = 0;
  test::run_command(std::string("/usr/bin/python3 ") + kTool + " " + args + " 2>&1", status);
  REQUIRE(status == 0);
}

}  // namespace

TEST_CASE("shard file names", "[io][shard]") {
  CHECK(shard_file_name(3) == "rank-00003.h5");
  CHECK(shard_file_name(12345) == "rank-12345.h5");
}

TEST_CASE("shard round trip, every dtype", "[io][shard]") {
  TempDir dir;
  const ShardInfo info = sample_info();
  const auto path = dir / "rank-00001.h5";
  write_shard(path, info, /*reverse=*/true);

  ShardReader reader(path);
  CHECK(reader.info() == info);
  CHECK(reader.path() == path);
  check_contents(reader, info);
  ShardReader moved = std::move(reader);
  CHECK(moved.info().num_layers == 3);
}

TEST_CASE("the reader and the in-place layout find the same dataset offsets", "[io][shard]") {
  // Both ask h5::contiguous_offset; the bytes at its offsets are the datasets' own.
  TempDir dir;
  const ShardInfo info = sample_info();
  const auto path = dir / "rank-00001.h5";
  write_shard(path, info);
  ShardReader reader(path);
  const ShardLayout layout = read_shard_layout(path, reader.info());
  REQUIRE(layout.layers.size() == 3);
  const RowFile file(path);
  const auto slots = static_cast<size_t>(info.num_slots_per_rank);
  for (int32_t layer_idx = 0; layer_idx < info.num_layers; ++layer_idx) {
    const Layer expected = make_layer(info, layer_idx);
    const LayerOffsets& offsets = layout.layers[static_cast<size_t>(layer_idx)];
    std::vector<int32_t> ids(slots);
    file.read(offsets.logical_ids, std::as_writable_bytes(std::span(ids)));
    CHECK(ids == expected.ids);
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      const std::optional<uint64_t> offset = reader.tensor_offset(layer_idx, t);
      REQUIRE(offset.has_value());
      CHECK(*offset == offsets.tensors[t]);
      std::vector<std::byte> rows(expected.rows[t].size());
      file.read(*offset, rows);
      CHECK(rows == expected.rows[t]);
      std::vector<uint64_t> sums(slots);
      file.read(offsets.checksums[t], std::as_writable_bytes(std::span(sums)));
      CHECK(sums == expected.sums[t]);
    }
  }
}

TEST_CASE("a chunked dataset has no offset: read through HDF5, refused in place",
          "[io][shard][h5py]") {
  TempDir dir;
  const ShardInfo info = sample_info();
  const auto path = dir / "rank-00001.h5";
  write_shard(path, info);
  h5py("chunk " + path.string() + " layer_00001/b");
  ShardReader reader(path);
  CHECK_FALSE(reader.tensor_offset(1, 1).has_value());
  CHECK(reader.tensor_offset(1, 0).has_value());
  CHECK(reader.tensor_offset(0, 1).has_value());
  const Layer expected = make_layer(info, 1);
  std::vector<std::byte> rows(expected.rows[1].size());
  reader.read_tensor(1, 1, rows);
  CHECK(rows == expected.rows[1]);
  ErrorKind kind = ErrorKind::kInternal;
  CHECK(error_text([&] { (void)read_shard_layout(path, reader.info()); }, &kind) ==
        "'" + path.string() +
            "': layer_00001: dataset 'b' is not contiguous and allocated: it cannot be updated "
            "in place");
  CHECK(kind == ErrorKind::kInput);
}

TEST_CASE("shard bytes depend only on content", "[io][shard]") {
  // Same content, layers written in the other order and in a later second: the files are
  // identical, so HDF5 timestamps and write order leave no trace.
  TempDir dir;
  write_shard(dir / "a.h5", sample_info(), false);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write_shard(dir / "b.h5", sample_info(), true);
  const std::string a = test::read_file(dir / "a.h5");
  CHECK(a.size() > 1000);
  CHECK(a == test::read_file(dir / "b.h5"));
}

TEST_CASE("shard writer refuses misuse", "[io][shard]") {
  TempDir dir;
  const ShardInfo info = sample_info();
  const auto path = dir / "rank-00001.h5";
  ErrorKind kind = ErrorKind::kInternal;
  {
    ShardWriter writer(path, info);
    write_layer(writer, 0, make_layer(info, 0));
    CHECK(error_text([&] { write_layer(writer, 0, make_layer(info, 0)); }, &kind) != "no error");
    CHECK(kind == ErrorKind::kInternal);
    CHECK(error_text([&] { writer.close(); }) ==
          "shard '" + path.string() + "' closed before these layers were written: 1, 2");
  }  // destroyed without a successful close: must not throw
  CHECK(error_text([&] { ShardWriter w(path, info); }, &kind) ==
        "cannot create shard '" + path.string() + "': the file already exists");
  CHECK(kind == ErrorKind::kIo);
}

TEST_CASE("a full disk surfaces as an I/O error", "[io][shard]") {
  TempDir dir;
  ShardInfo info = sample_info();
  info.tensors = parse_tensor_specs("w:fp32:1024x256");  // 1 MiB per slot
  // The file size limit stands in for a full disk: writes past it fail with EFBIG.
  std::signal(SIGXFSZ, SIG_IGN);
  ErrorKind kind = ErrorKind::kInternal;
  const auto path = dir / "rank-00001.h5";
  std::string text, close_text;
  rlimit saved{};
  getrlimit(RLIMIT_FSIZE, &saved);
  {
    // Created first: the writer flushes HDF5's metadata at creation, which sets the file's
    // (sparse) size; the limit then stops the writes past 2 MiB, as a full disk would.
    ShardWriter writer(path, info);
    rlimit small = saved;
    small.rlim_cur = 2 << 20;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    text = error_text([&] { write_layer(writer, 0, make_layer(info, 0)); }, &kind);
    close_text = error_text([&] { writer.close(); });
  }  // the destructor's close fails too; it must neither throw nor leave a crash for exit
  setrlimit(RLIMIT_FSIZE, &saved);
  CHECK(kind == ErrorKind::kIo);
  // The root cause first, once, then the failed call (rows are written with pwrite,
  // outside HDF5: no HDF5 stack at all).
  CHECK_THAT(text, Catch::StartsWith("writing layer 0 of '" + path.string() +
                                     "': tensor 'w': File too large (pwrite of "));
  CHECK(text.find("[HDF5:") == std::string::npos);
  CHECK(text.find('\n') == std::string::npos);
  CHECK(close_text == "writing '" + path.string() + "': incomplete after a failed write");
  // The library still works afterwards.
  write_shard(dir / "rank-00002.h5", info);
  CHECK(ShardReader(dir / "rank-00002.h5").info() == info);
}

namespace {

// Pages of `path` in the page cache, out of all (mincore).
std::pair<size_t, size_t> resident_pages(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const auto size = static_cast<size_t>(std::filesystem::file_size(path));
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in_core((size + page - 1) / page);
  REQUIRE(::mincore(map, size, in_core.data()) == 0);
  ::munmap(map, size);
  const auto resident = static_cast<size_t>(
      std::count_if(in_core.begin(), in_core.end(), [](unsigned char c) { return c & 1; }));
  return {resident, in_core.size()};
}

// Whether O_DIRECT is taken in `dir` (tmpfs refuses it).
bool direct_io_in(const std::filesystem::path& dir) {
  const auto probe = dir / "direct-probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);
  std::filesystem::remove(probe);
  return fd >= 0;
}

// Writes a shard of large tensors from 4 KiB-aligned memory, layers in `order`; returns
// the writer's folded hash.
std::optional<uint64_t> write_aligned(const std::filesystem::path& path, const ShardInfo& info,
                                      const std::vector<int32_t>& order) {
  ShardWriter writer(path, info);
  for (int32_t layer_idx : order) {
    const Layer layer = make_layer(info, layer_idx);
    std::vector<std::unique_ptr<std::byte, decltype(&std::free)>> memory;
    std::vector<std::span<const std::byte>> rows;
    for (const auto& bytes : layer.rows) {
      const size_t rounded = (bytes.size() + 4095) / 4096 * 4096;
      memory.emplace_back(static_cast<std::byte*>(std::aligned_alloc(4096, rounded)), &std::free);
      std::memcpy(memory.back().get(), bytes.data(), bytes.size());
      rows.emplace_back(memory.back().get(), bytes.size());
    }
    writer.write_layer(layer_idx, layer.ids, rows, layer.sums);
  }
  writer.close();
  return writer.file_xxh3();
}

}  // namespace

TEST_CASE("large rows go out with O_DIRECT, and the file hash is folded into the writes",
          "[io][shard]") {
  TempDir dir;
  ShardInfo info = sample_info();
  // 300 KiB + 3 bytes per slot (an unaligned tail), a small tensor, 1 MiB per slot.
  info.tensors = parse_tensor_specs("w:u8:307203,s:fp32:3,v:bf16:512x1024");
  const bool buffered = GENERATE(false, true);
  if (buffered) ::setenv("EPLB_TEST_NO_O_DIRECT", "1", 1);
  const auto path = dir / "rank-00001.h5";
  const auto folded = write_aligned(path, info, {0, 1, 2});
  if (buffered) ::unsetenv("EPLB_TEST_NO_O_DIRECT");
  // The manifest's hash without reading the file again.
  REQUIRE(folded.has_value());
  CHECK(*folded == describe_file(path).xxh3);
  // The bytes are right, whichever way they went.
  ShardReader reader(path);
  check_contents(reader, info);
  // Direct writes leave the data out of the page cache (read_tensor above went through
  // HDF5's own reads, which cache what they read: check a fresh file).
  const auto again = dir / "rank-00002.h5";
  REQUIRE(write_aligned(again, info, {0, 1, 2}) == folded);
  CHECK(test::read_file(again) == test::read_file(path));
  if (!buffered && direct_io_in(dir.path())) {
    // read_file above cached `again`; write a third copy and look before reading it.
    const auto third = dir / "rank-00003.h5";
    write_aligned(third, info, {0, 1, 2});
    const auto [resident, pages] = resident_pages(third);
    CAPTURE(resident, pages);
    CHECK(resident * 4 < pages);
  }
}

TEST_CASE("aligned rows are read with O_DIRECT, anything else buffered, the same bytes",
          "[io][shard][h5py]") {
  TempDir dir;
  ShardInfo info = sample_info();
  // 300 KiB + 3 bytes per slot (an unaligned tail), a small tensor, 1 MiB per slot.
  info.tensors = parse_tensor_specs("w:u8:307203,s:fp32:3,v:bf16:512x1024");
  const auto path = dir / "rank-00001.h5";
  write_aligned(path, info, {0, 1, 2});
  // Rows into 4 KiB-aligned memory with one spare byte in front, so that `shift` 1 gives
  // memory off the alignment.
  const auto read_at = [&](const ShardReader& reader, int32_t layer_idx, size_t t, size_t shift) {
    const Layer expected = make_layer(info, layer_idx);
    const size_t bytes = expected.rows[t].size();
    std::unique_ptr<std::byte, decltype(&std::free)> memory(
        static_cast<std::byte*>(std::aligned_alloc(4096, (bytes + 4096) / 4096 * 4096 + 4096)),
        &std::free);
    std::span<std::byte> out(memory.get() + shift, bytes);
    reader.read_tensor(layer_idx, t, out);
    CHECK(std::equal(out.begin(), out.end(), expected.rows[t].begin(), expected.rows[t].end()));
  };
  const bool direct = direct_io_in(dir.path());
  SECTION("aligned memory: direct where the filesystem takes it, the unaligned tail buffered") {
    ShardReader reader(path);
    for (int32_t layer_idx = 0; layer_idx < info.num_layers; ++layer_idx) {
      for (size_t t = 0; t < info.tensors.size(); ++t) read_at(reader, layer_idx, t, 0);
    }
    // "w" (3 x 307203 bytes) and "v" (3 MiB) per layer, less each one's unaligned tail;
    // "s" is too small to bother.
    const uint64_t aligned_w = 3 * 307203 / 4096 * 4096, aligned_v = 3 * 512 * 1024 * 2;
    CHECK(reader.bytes_read_direct() == (direct ? 3 * (aligned_w + aligned_v) : 0));
  }
  SECTION("unaligned memory, or EPLB_TEST_NO_O_DIRECT: buffered") {
    ShardReader reader(path);
    read_at(reader, 1, 2, 1);
    CHECK(reader.bytes_read_direct() == 0);
    ::setenv("EPLB_TEST_NO_O_DIRECT", "1", 1);
    ShardReader buffered(path);
    ::unsetenv("EPLB_TEST_NO_O_DIRECT");
    read_at(buffered, 1, 2, 0);
    CHECK(buffered.bytes_read_direct() == 0);
  }
  SECTION("a dataset at an unaligned file offset (another tool's file): buffered") {
    h5py("unalign " + path.string() + " layer_00001/w");  // u8: h5py keeps its type
    ShardReader reader(path);
    const std::optional<uint64_t> offset = reader.tensor_offset(1, 0);
    REQUIRE(offset.has_value());
    REQUIRE(*offset % 4096 != 0);
    read_at(reader, 1, 0, 0);
    CHECK(reader.bytes_read_direct() == 0);
    read_at(reader, 2, 0, 0);  // still aligned
    CHECK(reader.bytes_read_direct() == (direct ? 3 * 307203 / 4096 * 4096 : 0));
  }
}

TEST_CASE("layers written out of order: no folded hash, the file is read instead", "[io][shard]") {
  TempDir dir;
  ShardInfo info = sample_info();
  info.tensors = parse_tensor_specs("v:bf16:512x1024");
  const auto path = dir / "rank-00001.h5";
  CHECK_FALSE(write_aligned(path, info, {2, 1, 0}).has_value());
  // Small layers out of order are held until their turn: the hash is still folded.
  info.tensors = parse_tensor_specs("v:bf16:16");
  const auto small = dir / "rank-00002.h5";
  const auto folded = write_aligned(small, info, {2, 1, 0});
  CHECK(folded == describe_file(small).xxh3);
}

TEST_CASE("shard reader reports missing and foreign files", "[io][shard]") {
  TempDir dir;
  ErrorKind kind = ErrorKind::kInternal;
  const auto missing = dir / "rank-00009.h5";
  CHECK(error_text([&] { ShardReader r(missing); }, &kind) ==
        "cannot open shard '" + missing.string() + "': No such file or directory");
  CHECK(kind == ErrorKind::kIo);
  const auto text_file = dir / "notes.h5";
  test::write_file(text_file, "not hdf5");
  const std::string text = error_text([&] { ShardReader r(text_file); }, &kind);
  CHECK(kind == ErrorKind::kInput);  // readable, but not a shard: corrupt content, exit 2
  CHECK_THAT(text, Catch::StartsWith("cannot open shard '" + text_file.string() +
                                     "' as HDF5 (corrupt or not HDF5): "));
  CHECK_THAT(text, Catch::Contains("file signature not found"));
}

TEST_CASE("shard reader validates layout, shapes and types", "[io][shard]") {
  TempDir dir;
  const auto path = dir / "rank-00001.h5";
  const std::string p = "'" + path.string() + "'";
  write_shard(path, sample_info());
  ErrorKind kind = ErrorKind::kInternal;

  SECTION("wrong shape") {
    h5py("reshape " + path.string() + " layer_00002/b 3x6");
    CHECK(error_text([&] { ShardReader r(path); }, &kind) ==
          p + " layer 2: dataset 'b' has shape [3,6], expected [3,7]");
    CHECK(kind == ErrorKind::kInput);
  }
  SECTION("wrong type: bf16 rewritten as float32") {
    h5py("reshape " + path.string() + " layer_00000/a 3x3x5");
    CHECK(error_text([&] { ShardReader r(path); }) ==
          p + " layer 0: dataset 'a' has type fp32, expected bf16");
  }
  SECTION("every problem is reported") {
    h5py("delete " + path.string() + " layer_00001/xxh3/c");
    h5py("delete " + path.string() + " layer_00001/logical_ids");
    h5py("set-attr " + path.string() + " layer_00002/d dtype fp8_e5m2");
    h5py("delete " + path.string() + " layer_00000");
    CHECK(error_text([&] { ShardReader r(path); }) ==
          p + " layer 0: group 'layer_00000' is missing\n" + p +
              " layer 1: dataset 'logical_ids' is missing\n" + p +
              " layer 1: dataset 'xxh3/c' is missing\n" + p +
              " layer 2: dataset 'd' has dtype attribute 'fp8_e5m2', expected 'fp8_e4m3'");
  }
  SECTION("root attributes") {
    h5py("set-attr " + path.string() + " / format something-else");
    CHECK(error_text([&] { ShardReader r(path); }, &kind) ==
          p + ": not an eplb checkpoint shard (attribute 'format' is 'something-else', "
              "expected 'eplb-checkpoint')");
    CHECK(kind == ErrorKind::kInput);
  }
  SECTION("fixed-length string attributes are read too") {
    h5py("set-fixed-attr " + path.string() + " / format eplb-checkpoint");
    h5py("set-fixed-attr " + path.string() + " layer_00001/a dtype bf16");
    CHECK(ShardReader(path).info() == sample_info());
    h5py("set-fixed-attr " + path.string() + " layer_00001/a dtype fp16");
    CHECK(error_text([&] { ShardReader r(path); }) ==
          p + " layer 1: dataset 'a' has dtype attribute 'fp16', expected 'bf16'");
  }
  SECTION("a string attribute that holds several strings") {
    // Found triaging fuzz_shard's first report: H5Aread wrote every element into a buffer for one
    // (a stack overflow for variable-length strings, a heap one for fixed-length).
    h5py("set-attr-array " + path.string() + " / format eplb-checkpoint,eplb-checkpoint");
    CHECK(error_text([&] { ShardReader r(path); }, &kind) ==
          p + ": attribute 'format' is not one string");
    CHECK(kind == ErrorKind::kInput);
    h5py("set-attr " + path.string() + " / format eplb-checkpoint");
    h5py("set-attr-array " + path.string() + " layer_00001/a fixed:dtype bf16,bf16,bf16");
    CHECK(error_text([&] { ShardReader r(path); }) ==
          p + " layer 1: dataset 'a': attribute 'dtype' is not one string");
  }
  SECTION("tensor spec attribute") {
    h5py("set-attr " + path.string() + " / tensors a:bf16:0");
    CHECK(error_text([&] { ShardReader r(path); }) ==
          p + ": attribute 'tensors': tensor spec item 'a:bf16:0': dimension '0' is not a "
              "positive integer");
  }
}

TEST_CASE("h5py and h5dump read shards with the right values", "[io][shard][h5py]") {
  TempDir dir;
  const ShardInfo info{0, 1, 1, 2, parse_tensor_specs("x:bf16:3,y:fp16:3,z:fp32:2,q:fp8_e4m3:2"),
                       ""};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC020, 0x3E20, 0x7F7F, 0x0080, 0x0001};
  const std::vector<uint16_t> fp16 = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x0400, 0x3555};
  const std::vector<float> fp32 = {1.5f, -0.1f, 3.4e38f, 1e-45f};
  const std::vector<uint8_t> fp8 = {0, 1, 0x7e, 0xfe};
  const std::vector<std::span<const std::byte>> rows = {
      std::as_bytes(std::span(bf16)), std::as_bytes(std::span(fp16)),
      std::as_bytes(std::span(fp32)), std::as_bytes(std::span(fp8))};
  const std::vector<std::vector<uint64_t>> sums(4, std::vector<uint64_t>{1, 2});
  const auto path = dir / "rank-00000.h5";
  ShardWriter writer(path, info);
  writer.write_layer(0, std::vector<int32_t>{5, -1}, rows, sums);
  writer.close();

  int status = 0;
  const std::string out = test::run_command(
      std::string("/usr/bin/python3 ") + kTool + " dump " + path.string() + " 2>&1", status);
  REQUIRE(status == 0);
  const auto fmt = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %.17g", v);
    return std::string(buf);
  };
  std::string x = "data x float32 2x3", y = "data y float16 2x3", z = "data z float32 2x2";
  for (uint16_t b : bf16) {
    const uint32_t bits = uint32_t{b} << 16;
    float f = 0;
    std::memcpy(&f, &bits, 4);
    x += fmt(f);
  }
  y += " 1 -2.5 65504 5.9604644775390625e-08 6.103515625e-05 0.333251953125";
  for (float f : fp32) z += fmt(f);
  CHECK(out ==
        "attr ep_rank 0\nattr ep_size 1\nattr format eplb-checkpoint\nattr num_layers 1\n"
        "attr num_slots_per_rank 2\nattr tensors x:bf16:3,y:fp16:3,z:fp32:2,q:fp8_e4m3:2\n"
        "attr version 1\n"
        "data logical_ids int32 2 5 -1\n"
        "data q uint8 2x2 0 1 126 254\ndtype-attr q fp8_e4m3\n" +
            x + "\ndtype-attr x bf16\n" + y + "\ndtype-attr y fp16\n" + z +
            "\ndtype-attr z fp32\n");
  CHECK_THAT(x, Catch::Contains(" 3.3895313892515355e+38 1.1754943508222875e-38 "
                                "9.1835496157991212e-41"));

  const std::string header = test::run_command("h5dump -H " + path.string() + " 2>&1", status);
  CHECK(status == 0);
  CHECK_THAT(header, Catch::Contains("16-bit little-endian floating-point 16-bit precision"));
  CHECK_THAT(header, Catch::Contains("DATASET \"logical_ids\""));
}

TEST_CASE("h5py reads the integer, bool and fp64 datasets back exactly", "[io][shard][h5py]") {
  TempDir dir;
  const auto tensors = parse_tensor_specs(
      "b:bool:3,u8:u8:2,i8:i8:2,u16:u16:2,i16:i16:2,u32:u32:2,i32:i32:2,u64:u64:2,i64:i64:3,"
      "s:fp8_e8m0:2,d:fp64:3");
  const ShardInfo info{0, 1, 1, 1, tensors, ""};
  const std::vector<uint8_t> b = {1, 0, 1}, u8 = {0, 255}, s = {0x7f, 0xfe};
  const std::vector<int8_t> i8 = {-128, 127};
  const std::vector<uint16_t> u16 = {1, 65535};
  const std::vector<int16_t> i16 = {-32768, 32767};
  const std::vector<uint32_t> u32 = {4294967295u, 7};
  const std::vector<int32_t> i32 = {INT32_MIN, INT32_MAX};
  // Beyond 2^53: a reader going through double would round these.
  const std::vector<uint64_t> u64 = {UINT64_MAX, (uint64_t{1} << 53) + 1};
  const std::vector<int64_t> i64 = {INT64_MIN, INT64_MAX, -((int64_t{1} << 53) + 1)};
  const std::vector<double> d = {0.1, -1e308, 4.9406564584124654e-324};
  const std::vector<std::span<const std::byte>> rows = {
      std::as_bytes(std::span(b)),   std::as_bytes(std::span(u8)),  std::as_bytes(std::span(i8)),
      std::as_bytes(std::span(u16)), std::as_bytes(std::span(i16)), std::as_bytes(std::span(u32)),
      std::as_bytes(std::span(i32)), std::as_bytes(std::span(u64)), std::as_bytes(std::span(i64)),
      std::as_bytes(std::span(s)),   std::as_bytes(std::span(d))};
  const std::vector<std::vector<uint64_t>> sums(rows.size(), std::vector<uint64_t>{1});
  const auto path = dir / "rank-00000.h5";
  ShardWriter writer(path, info);
  writer.write_layer(0, std::vector<int32_t>{5}, rows, sums);
  writer.close();

  int status = 0;
  const std::string out = test::run_command(
      std::string("/usr/bin/python3 ") + kTool + " dump " + path.string() + " 2>&1", status);
  REQUIRE(status == 0);
  // h5py lists datasets in name order; bool and fp8_e8m0 are raw bytes.
  CHECK_THAT(out, Catch::Contains("data b uint8 1x3 1 0 1\ndtype-attr b bool\n"
                                  "data d float64 1x3 0.10000000000000001 -1e+308 "
                                  "4.9406564584124654e-324\ndtype-attr d fp64\n"
                                  "data i16 int16 1x2 -32768 32767\ndtype-attr i16 i16\n"
                                  "data i32 int32 1x2 -2147483648 2147483647\ndtype-attr i32 i32\n"
                                  "data i64 int64 1x3 -9223372036854775808 9223372036854775807 "
                                  "-9007199254740993\ndtype-attr i64 i64\n"
                                  "data i8 int8 1x2 -128 127\ndtype-attr i8 i8\n"
                                  "data logical_ids int32 1 5\n"
                                  "data s uint8 1x2 127 254\ndtype-attr s fp8_e8m0\n"
                                  "data u16 uint16 1x2 1 65535\ndtype-attr u16 u16\n"
                                  "data u32 uint32 1x2 4294967295 7\ndtype-attr u32 u32\n"
                                  "data u64 uint64 1x2 18446744073709551615 9007199254740993\n"
                                  "dtype-attr u64 u64\n"
                                  "data u8 uint8 1x2 0 255\ndtype-attr u8 u8\n"));
  // And our reader gets the same bytes back.
  ShardReader reader(path);
  for (size_t t = 0; t < rows.size(); ++t) {
    std::vector<std::byte> back(rows[t].size());
    reader.read_tensor(0, t, back);
    CHECK(std::equal(back.begin(), back.end(), rows[t].begin(), rows[t].end()));
  }
}

TEST_CASE("a dataset of another integer type is refused", "[io][shard]") {
  TempDir dir;
  ShardInfo info = sample_info();
  const auto path = dir / "rank-00001.h5";
  write_shard(path, info);
  // Same element size, other signedness: the bytes would mean something else.
  h5py("retype " + path.string() + " layer_00001/k int32");
  const std::string p = "'" + path.string() + "'";
  CHECK(error_text([&] { ShardReader r(path); }) ==
        p + " layer 1: dataset 'k' has type int32, expected uint32 (dtype u32)");
}

}  // namespace eplb::io
