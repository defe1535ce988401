// Writing a checkpoint directory so that it appears complete or not at all (docs/RELIABILITY.md):
// rank 0 takes ownership of the output name (eplb::fs::OutputOwner: lock, recovery of a dead
// run's leftovers, staging directory), every process writes and fsyncs its shards there,
// all agree, then rank 0 writes manifest.json and renames the staging directory into
// place. On any failure the staging directory is removed; another run's is never touched.
#pragma once

#include <mpi.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "eplb/fs/atomic_dir.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::job {

// A shard this process wrote and closed, with its whole-file xxh3 when the writer computed
// it on the way (io::ShardWriter::file_xxh3); commit() reads the file for it otherwise.
struct WrittenShard {
  std::filesystem::path path;
  std::optional<uint64_t> xxh3;
};

class CheckpointOutput {
 public:
  // Collective: rank 0 takes ownership of the output name (see eplb::fs::OutputOwner) and
  // creates the staging directory; every rank learns its path. Throws on every rank on
  // failure. Committed files get the modes of `mode_like` (the input checkpoint), never
  // wider, or the umask's without one.
  // `identity` describes the inputs (io::checkpoint_id_for): the new checkpoint's id.
  // `min_bytes` (io::checkpoint_data_bytes) must fit in the output's filesystem, checked by
  // rank 0 before anything is written (eplb::fs::require_free_space; kIo on every rank).
  CheckpointOutput(const runtime::Group& group, std::filesystem::path output, bool force,
                   uint64_t min_bytes, const std::string& identity,
                   std::optional<std::filesystem::path> mode_like = std::nullopt);
  // Local: removes the staging directory (rank 0) unless commit() succeeded, and releases
  // the output name. Never throws.
  ~CheckpointOutput();
  CheckpointOutput(const CheckpointOutput&) = delete;
  CheckpointOutput& operator=(const CheckpointOutput&) = delete;
  CheckpointOutput(CheckpointOutput&&) = delete;
  CheckpointOutput& operator=(CheckpointOutput&&) = delete;

  // Where this process writes its shard files.
  const std::filesystem::path& staging() const { return staging_; }
  const std::filesystem::path& output() const { return output_; }
  // The new checkpoint's identifier, the same on every rank: every shard's attribute
  // "checkpoint_id" and the manifest's.
  const std::string& checkpoint_id() const { return checkpoint_id_; }

  // Collective, after every rank closed (fsynced) its shards: each rank describes the
  // files it wrote (size, xxh3), rank 0 writes the manifest (files in EP-rank order) and
  // renames the staging directory into place. `manifest.files` is filled here.
  void commit(const std::vector<WrittenShard>& my_files, io::Manifest manifest);

 private:
  runtime::Group group_;
  std::filesystem::path output_;
  std::filesystem::path staging_;
  std::optional<std::filesystem::path> mode_like_;
  std::string checkpoint_id_;
  std::unique_ptr<eplb::fs::OutputOwner> owner_;  // rank 0 only
};

}  // namespace eplb::job
