#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "eplb/core/error.hpp"
#include "eplb/io/manifest.hpp"
#include "io_test_util.hpp"

namespace eplb::io {
namespace {

using core::ErrorKind;
using test::error_text;
using test::TempDir;

Manifest sample_manifest() {
  Manifest m;
  m.tensors = parse_tensor_specs("w13:fp8_e4m3:4x2,w2:bf16:2x2");
  m.placement.ep_size = 2;
  m.placement.num_slots_per_rank = 2;
  m.placement.num_logical_experts = 3;
  m.placement.physical_to_logical_map = {{0, 1, 2, 0}, {2, -1, 1, 0}};
  m.files = {{"rank-00000.h5", 1234, 0x0123456789abcdefull},
             {"rank-00001.h5", 99, 0xfedcba9876543210ull}};
  return m;
}

const std::string kSampleJson = R"({
  "format": "eplb-manifest",
  "version": 1,
  "tensors": [
    {"name":"w13","dtype":"fp8_e4m3","shape":[4,2]},
    {"name":"w2","dtype":"bf16","shape":[2,2]}
  ],
  "placement": {
    "ep_size": 2, "num_slots_per_rank": 2, "num_logical_experts": 3,
    "physical_to_logical_map": [
      [0,1,2,0],
      [2,-1,1,0]
    ]
  },
  "files": [
    {"name":"rank-00000.h5","size":1234,"xxh3":"0123456789abcdef"},
    {"name":"rank-00001.h5","size":99,"xxh3":"fedcba9876543210"}
  ]
}
)";

// The sample JSON with `from` replaced by `to` (which must occur once).
std::string patched(const std::string& from, const std::string& to) {
  std::string text = kSampleJson;
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  REQUIRE(text.find(from, at + 1) == std::string::npos);
  return text.replace(at, from.size(), to);
}

std::string parse_error(const std::string& text) {
  ErrorKind kind = ErrorKind::kInternal;
  std::string out = error_text([&] { parse_manifest(text, "m.json"); }, &kind);
  CHECK(kind == ErrorKind::kInput);
  return out;
}

}  // namespace

TEST_CASE("manifest JSON text and round trip", "[io][manifest]") {
  CHECK(to_json(sample_manifest()) == kSampleJson);
  CHECK(parse_manifest(kSampleJson, "m.json") == sample_manifest());
}

TEST_CASE("manifest checkpoint_id: optional, written when set, read back", "[io][manifest]") {
  Manifest m = sample_manifest();
  m.checkpoint_id = "00112233445566778899aabbccddeeff";
  const std::string text = to_json(m);
  CHECK(text.find("\n  \"checkpoint_id\": \"00112233445566778899aabbccddeeff\",\n") !=
        std::string::npos);
  CHECK(parse_manifest(text, "m.json") == m);
  CHECK(parse_error(patched("\"version\": 1,", "\"version\": 1, \"checkpoint_id\": \"a b\",")) ==
        "'m.json' at /checkpoint_id: expected 1 to 64 letters, digits or '-', got \"a b\"");
  // Derived from the inputs: the same identity gives the same id, another a different one.
  CHECK(checkpoint_id_for("run\nA") == checkpoint_id_for("run\nA"));
  CHECK(checkpoint_id_for("run\nA") != checkpoint_id_for("run\nB"));
  CHECK(checkpoint_id_for("").size() == 32);
  CHECK(checkpoint_id_for("").find_first_not_of("0123456789abcdef") == std::string::npos);
}

TEST_CASE("manifest parse errors name the JSON location", "[io][manifest]") {
  CHECK(parse_error(patched("\"eplb-manifest\"", "\"other\"")) ==
        "'m.json' at /format: expected \"eplb-manifest\", got \"other\"");
  CHECK(parse_error(patched("\"version\": 1", "\"version\": 2")) ==
        "'m.json' at /version: version 2 is not supported (this build reads version 1)");
  CHECK(parse_error(patched("\"xxh3\":\"fedcba9876543210\"", "\"xxh3\":\"fedcba98\"")) ==
        "'m.json' at /files/1/xxh3: expected 16 lowercase hex digits, got \"fedcba98\"");
  CHECK(parse_error(patched("[2,-1,1,0]", "[2,-1,3,0]")) ==
        "'m.json' at /placement/physical_to_logical_map/1/2: logical expert id 3 is out of "
        "range [-1, 3)");
  CHECK(parse_error(patched("[2,-1,1,0]", "[2,-1,1]")) ==
        "'m.json' at /placement/physical_to_logical_map/1: layer 1 has 3 slots, but layer 0 "
        "has 4");
  CHECK(parse_error(patched("\"name\":\"rank-00001.h5\"", "\"name\":\"rank-1.h5\"")) ==
        "'m.json' at /files/1/name: expected \"rank-00001.h5\", got \"rank-1.h5\"");
  CHECK(parse_error(patched("\"shape\":[2,2]", "\"shape\":[2,0],\"extra\":1")) ==
        "'m.json' at /tensors/1/extra: unknown key \"extra\"\n"
        "'m.json' at /tensors/1/shape/1: expected a positive integer, got number 0");
  CHECK(parse_error(patched("\"name\":\"w2\"", "\"name\":\"w13\"")) ==
        "'m.json' at /tensors/1/name: tensor 'w13' is listed twice");
  CHECK(parse_error(patched("\"ep_size\": 2, ", "")) ==
        "'m.json' at /placement: missing required key \"ep_size\"");
  CHECK(parse_error(patched("\"ep_size\": 2", "\"ep_size\": 0")) ==
        "'m.json' at /placement/ep_size: ep_size must be positive, got 0");
  CHECK(parse_error(patched("\"version\": 1,", "\"version\": 1, \"a/b\": 0,")) ==
        "'m.json' at /a~1b: unknown key \"a/b\"");
  CHECK(parse_error("[1]") == "'m.json': expected a manifest object, got an array");
  CHECK(parse_error("{\"format\": ") ==
        "'m.json': malformed JSON at line 1, column 12 (byte 12): syntax error while parsing "
        "value - unexpected end of input; expected '[', '{', or a literal");
  CHECK(parse_error(patched("\"version\": 1,", "\"version\": 1, \"version\": 1,")) ==
        "'m.json' at /version: duplicate key \"version\"");
  // Duplicates are caught at every depth, with their location.
  CHECK(parse_error(patched("\"ep_size\": 2,", "\"ep_size\": 2, \"ep_size\": 2,")) ==
        "'m.json' at /placement/ep_size: duplicate key \"ep_size\"");
  // The placement is checked by lib/placement: unknown keys, and the same texts as a file.
  CHECK(parse_error(patched("\"ep_size\": 2,", "\"ep_size\": 2, \"format\": 1,")) ==
        "'m.json' at /placement/format: unknown key \"format\"");
  CHECK(parse_error(patched("\"num_slots_per_rank\": 2", "\"num_slots_per_rank\": 3")) ==
        "'m.json' at /placement/num_slots_per_rank: num_slots_per_rank 3 times ep_size 2 is 6, "
        "but layers have 4 slots");
}

TEST_CASE("load_manifest and describe_file", "[io][manifest]") {
  TempDir dir;
  ErrorKind kind = ErrorKind::kInternal;
  // A FIFO named manifest.json is refused at once, never read (it would block forever).
  REQUIRE(::mkfifo((dir / "manifest.json").c_str(), 0600) == 0);
  CHECK(error_text([&] { load_manifest(dir.path()); }, &kind)
            .find("must be a regular file, but it is a FIFO") != std::string::npos);
  CHECK(kind == ErrorKind::kInput);
  std::filesystem::remove(dir / "manifest.json");
  CHECK(error_text([&] { load_manifest(dir.path()); }, &kind) ==
        "'" + dir.path().string() + "' is not a complete eplb checkpoint: '" +
            (dir / "manifest.json").string() + "' does not exist");
  CHECK(kind == ErrorKind::kInput);
  test::write_file(dir / "manifest.json", kSampleJson);
  CHECK(load_manifest(dir.path()) == sample_manifest());

  test::write_file(dir / "empty", "");
  CHECK(describe_file(dir / "empty") == FileEntry{"empty", 0, 0x2d06800538d394c2ull});
  // Larger than the 4 MiB read chunk, and not a multiple of it.
  std::string big(9 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 12));
  test::write_file(dir / "big", big);
  const FileEntry entry = describe_file(dir / "big");
  CHECK(entry.name == "big");
  CHECK(entry.size == big.size());
  CHECK(entry.xxh3 == checksum(std::as_bytes(std::span(big.data(), big.size()))));
  CHECK(error_text([&] { describe_file(dir / "nope"); }, &kind) ==
        "cannot open '" + (dir / "nope").string() + "': No such file or directory");
  CHECK(kind == ErrorKind::kIo);
}

TEST_CASE("check_file_entry: size always, xxh3 up to a size, before any parser", "[io][manifest]") {
  TempDir dir;
  const std::string text = "not an HDF5 file, but bytes all the same";
  test::write_file(dir / "rank-00000.h5", text);
  const FileEntry good = describe_file(dir / "rank-00000.h5");
  const auto check = [&](const FileEntry& want, uint64_t hash_up_to) {
    core::ProblemList problems;
    const bool ok = check_file_entry(dir / "rank-00000.h5", want, hash_up_to, problems);
    CHECK(ok == problems.empty());
    return problems.empty() ? std::string() : problems.problems().at(0);
  };
  const std::string path = (dir / "rank-00000.h5").string();
  CHECK(check(good, UINT64_MAX).empty());
  CHECK(check(good, 0).empty());

  FileEntry longer = good;
  longer.size += 1;
  const std::string size_text = "'" + path + "' is " + std::to_string(text.size()) +
                                " bytes, but the manifest says " + std::to_string(text.size() + 1) +
                                ": it was modified, truncated or comes from another checkpoint";
  CHECK(check(longer, UINT64_MAX) == size_text);
  CHECK(check(longer, 0) == size_text);  // sizes are always checked

  FileEntry other = good;
  other.xxh3 ^= 1;
  CHECK(check(other, UINT64_MAX).starts_with("'" + path + "': whole-file xxh3 "));
  CHECK(check(other, text.size()).find("differs from the manifest's") != std::string::npos);
  CHECK(check(other, text.size() - 1).empty());  // larger than hash_up_to: not hashed
  other.xxh3_known = false;                      // left out by run --in-place
  CHECK(check(other, UINT64_MAX).empty());

  // What it cannot examine is left to the open that follows (an I/O error there).
  core::ProblemList problems;
  CHECK(check_file_entry(dir / "missing.h5", good, UINT64_MAX, problems));
  std::filesystem::create_directory(dir / "dir.h5");
  CHECK(check_file_entry(dir / "dir.h5", good, UINT64_MAX, problems));
  CHECK(problems.empty());
}

}  // namespace eplb::io

namespace eplb::io {

TEST_CASE("manifest hugging_face section: optional, round trip, strict", "[io][manifest]") {
  Manifest m = sample_manifest();
  m.hugging_face = HfSource{"qwen3_moe",
                            "model.layers.{L}.mlp.experts.",
                            {1, 3},
                            {{"model.layers.{L}.mlp.experts.{E}.w13", false, {4, 2}},
                             {"model.layers.{L}.mlp.experts.w2", true, {}}},
                            {{"model-00001-of-00002.safetensors", 100}, {"b.safetensors", 7}}};
  const std::string text = to_json(m);
  CHECK(text.find("\"hugging_face\": {\"model_type\":\"qwen3_moe\"") != std::string::npos);
  CHECK(parse_manifest(text, "m.json") == m);
  // Without the section a manifest reads as before (checked above); with a broken one,
  // every problem has its location.
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const size_t at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    ErrorKind kind = ErrorKind::kInternal;
    auto out = test::error_text([&] { parse_manifest(t, "m.json"); }, &kind);
    CHECK(kind == ErrorKind::kInput);
    return out;
  };
  CHECK(broken("\"model_layers\":[1,3]", "\"model_layers\":[3,1]") ==
        "'m.json' at /hugging_face/model_layers/1: expected ascending non-negative layer "
        "numbers, got number 1");
  CHECK(broken("\"stacked\":true", "\"stacked\":1") ==
        "'m.json' at /hugging_face/tensors/1/stacked: expected true or false");
  CHECK(broken("\"size\":7", "\"size\":-7") ==
        "'m.json' at /hugging_face/files/1/size: expected a byte count");
  CHECK(broken("\"container\"", "\"containr\"") ==
        "'m.json' at /hugging_face/containr: unknown key \"containr\"\n"
        "'m.json' at /hugging_face: missing required key \"container\"");
}

}  // namespace eplb::io
