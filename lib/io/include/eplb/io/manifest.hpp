// manifest.json: written last, it marks a checkpoint directory complete (docs/FORMAT.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/io/tensor.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::io {

struct FileEntry {
  std::string name;   // "rank-00000.h5"
  uint64_t size = 0;  // bytes
  uint64_t xxh3 = 0;  // xxh3-64 of the whole file
  // False after `run --in-place` left a large shard's whole-file hash out ("xxh3": null,
  // docs/FORMAT.md): computing it reads the whole file. Sizes and per-row checksums hold.
  bool xxh3_known = true;
  bool operator==(const FileEntry&) const = default;
};

// How one slot tensor maps to the Hugging Face checkpoint it was imported from.
struct HfTensor {
  std::string hf_template;     // HF name with "{L}" (model layer) and, unless stacked, "{E}"
  bool stacked = false;        // one HF tensor holds every expert along dimension 0
  std::vector<int64_t> shape;  // one expert's shape in the HF file (may be empty: a scalar)
  bool operator==(const HfTensor&) const = default;
};

struct HfFileEntry {
  std::string name;  // "model-00001-of-00163.safetensors"
  uint64_t size = 0;
  bool operator==(const HfFileEntry&) const = default;
};

// Optional "hugging_face" section: what `export` needs to rebuild the HF checkpoint.
struct HfSource {
  std::string model_type;             // config.json "model_type" ("" if unknown)
  std::string container;              // e.g. "model.layers.{L}.mlp.experts."
  std::vector<int32_t> model_layers;  // model layer number of each MoE layer
  std::vector<HfTensor> tensors;      // one per Manifest::tensors entry, same order
  std::vector<HfFileEntry> files;     // the HF base's safetensors files, sorted by name
  bool operator==(const HfSource&) const = default;
};

struct Manifest {
  std::vector<TensorSpec> tensors;
  placement::Placement placement;  // the placement the checkpoint holds
  std::vector<FileEntry> files;    // one per EP rank, in rank order
  // Names this checkpoint; every shard carries it too. Optional ("checkpoint_id"): empty
  // in manifests written before identifiers existed, which stay readable.
  std::string checkpoint_id;
  std::optional<HfSource> hugging_face;  // set for checkpoints made by `import`
  bool operator==(const Manifest&) const = default;
};

inline constexpr const char* kManifestName = "manifest.json";

std::string to_json(const Manifest& manifest);
// Throws core::Error(kInput) naming the file and the JSON location of each problem.
Manifest parse_manifest(const std::string& json_text, const std::string& source_name);
Manifest load_manifest(const std::filesystem::path& dir);

// A checkpoint identifier: 32 lowercase hex digits, XXH3-128 of `identity`, a text that
// describes everything the checkpoint's bytes depend on (the command, its inputs' ids and
// checksums, the placement). Same inputs, same id, so the same output bytes (docs/RELIABILITY.md);
// different inputs, a different id, so a shard of another checkpoint is told apart.
std::string checkpoint_id_for(std::string_view identity);

// Size and xxh3-64 of a whole file, streamed.
FileEntry describe_file(const std::filesystem::path& path);

// Input shards up to this size are hashed whole against the manifest on every run: the
// read warms the page cache for the layer reads that follow, so it costs little.
inline constexpr uint64_t kCheapFileBytes = uint64_t{64} << 20;

// A shard against its manifest entry, before anything parses it (docs/RELIABILITY.md
// "Identity"): its size always (one stat), its whole-file xxh3 when the entry has one and
// the file is at most `hash_up_to` bytes (one sequential read). Returns false after adding
// one problem naming the file when either differs: the caller must then not open it with
// HDF5, whose parser is not robust against damaged metadata. Returns true when the file
// matches, and also when it cannot be examined or is not a regular file: the open that
// follows reports that, as an I/O error. Throws core::Error(kIo) when it cannot be read.
bool check_file_entry(const std::filesystem::path& path, const FileEntry& want, uint64_t hash_up_to,
                      core::ProblemList& problems);

}  // namespace eplb::io
