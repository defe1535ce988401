// manifest.json: written last, it marks a checkpoint directory complete (docs/FORMAT.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "eplb/io/tensor.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::io {

struct FileEntry {
  std::string name;   // "rank-00000.h5"
  uint64_t size = 0;  // bytes
  uint64_t xxh3 = 0;  // xxh3-64 of the whole file
  bool operator==(const FileEntry&) const = default;
};

struct Manifest {
  std::vector<TensorSpec> tensors;
  placement::Placement placement;  // the placement the checkpoint holds
  std::vector<FileEntry> files;    // one per EP rank, in rank order
  // Names this checkpoint; every shard carries it too. Optional ("checkpoint_id"): empty
  // in manifests written before identifiers existed, which stay readable.
  std::string checkpoint_id;
  bool operator==(const Manifest&) const = default;
};

inline constexpr const char* kManifestName = "manifest.json";

std::string to_json(const Manifest& manifest);
// Throws core::Error(kInput) naming the file and the JSON location of each problem.
Manifest parse_manifest(const std::string& json_text, const std::string& source_name);
Manifest load_manifest(const std::filesystem::path& dir);

// A fresh checkpoint identifier: 32 lowercase hex digits, random.
std::string new_checkpoint_id();

// Size and xxh3-64 of a whole file, streamed.
FileEntry describe_file(const std::filesystem::path& path);

}  // namespace eplb::io
