// Writing a checkpoint directory so that it appears complete or not at all:
// rank 0 creates a staging directory next to the output, every process writes and fsyncs
// its shards there, all agree, then rank 0 writes manifest.json and renames the staging
// directory into place. On any failure the staging directory is removed.
#pragma once

#include <filesystem>
#include <vector>

#include "eplb/io/manifest.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::engine {

class CheckpointOutput {
 public:
  // Collective: rank 0 checks the output (exists without force -> usage error) and creates
  // the staging directory; every rank learns its path. Throws on every rank on failure.
  CheckpointOutput(const runtime::Group& group, std::filesystem::path output, bool force);
  // Local: removes the staging directory (rank 0) unless commit() succeeded. Never throws.
  ~CheckpointOutput();
  CheckpointOutput(const CheckpointOutput&) = delete;
  CheckpointOutput& operator=(const CheckpointOutput&) = delete;
  CheckpointOutput(CheckpointOutput&&) = delete;
  CheckpointOutput& operator=(CheckpointOutput&&) = delete;

  // Where this process writes its shard files.
  const std::filesystem::path& staging() const { return staging_; }
  const std::filesystem::path& output() const { return output_; }

  // Collective, after every rank closed (fsynced) its shards: each rank describes the
  // files it wrote (size, xxh3), rank 0 writes the manifest (files in EP-rank order) and
  // renames the staging directory into place. `manifest.files` is filled here.
  void commit(const std::vector<std::filesystem::path>& my_files, io::Manifest manifest);

 private:
  runtime::Group group_;
  std::filesystem::path output_;
  std::filesystem::path staging_;
  bool force_;
  bool committed_ = false;
};

}  // namespace eplb::engine
