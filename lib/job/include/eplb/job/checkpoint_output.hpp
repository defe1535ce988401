// Writing an output directory so that it appears complete or not at all
// (docs/RELIABILITY.md), the one way every writer does it (run, generate, import, export):
// every host must see the output's parent (check_shared_directories), rank 0 takes
// ownership of the output name (fs::OutputOwner: lock, recovery of a dead run's leftovers,
// staging directory), the job must fit (fs::require_free_space), every process writes and
// fsyncs its files there, all agree, then rank 0 finishes the directory (our checkpoints:
// manifest.json) and renames it into place. On any failure the staging directory is
// removed; another run's is never touched.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eplb/fs/free_space.hpp"
#include "eplb/fs/output_owner.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::job {

// A file this process wrote and closed, with its whole-file xxh3 when the writer computed
// it on the way (io::ShardWriter::file_xxh3); commit() reads the file for it otherwise.
struct WrittenShard {
  std::filesystem::path path;
  std::optional<uint64_t> xxh3;
};

// What an output is and what it must hold.
struct OutputSpec {
  std::filesystem::path path;
  bool force = false;  // replace an existing checkpoint of ours (never anything else)
  // At least what the job writes under it once the staging directory exists
  // (io::checkpoint_space: the data bytes; the files: the shards, the manifest and its
  // temporary file), checked against the free space of the output's filesystem before
  // anything is written.
  fs::SpaceNeeded space{0};
  std::string what = "the new checkpoint";  // how the free-space refusal names it
  // Describes the inputs (io::checkpoint_id_for): the new checkpoint's id.
  std::string identity;
  // Committed files get the modes of this directory (the input checkpoint), never wider,
  // or the umask's without one.
  std::optional<std::filesystem::path> mode_like;
};

class CheckpointOutput {
 public:
  // Collective over session.group(): the output's parent must be the same directory on
  // every host (check_shared_directories; kIo), rank 0 takes ownership of the output name
  // (fs::OutputOwner; kUsage for "cannot create output", kIo), the space must fit (kIo).
  // Every rank learns the staging path; on failure every rank throws the same kind.
  CheckpointOutput(const runtime::MpiSession& session, OutputSpec spec);
  // Local: removes the staging directory (rank 0) unless a commit succeeded, and releases
  // the output name. Never throws.
  ~CheckpointOutput();
  CheckpointOutput(const CheckpointOutput&) = delete;
  CheckpointOutput& operator=(const CheckpointOutput&) = delete;
  CheckpointOutput(CheckpointOutput&&) = delete;
  CheckpointOutput& operator=(CheckpointOutput&&) = delete;

  // Where this process writes its files.
  const std::filesystem::path& staging() const { return staging_; }
  const std::filesystem::path& output() const { return spec_.path; }
  // The new checkpoint's identifier, the same on every rank: every shard's attribute
  // "checkpoint_id" and the manifest's.
  const std::string& checkpoint_id() const { return checkpoint_id_; }

  // Collective, after every rank closed (fsynced) its shards: each rank describes the
  // files it wrote (size, xxh3), rank 0 writes the manifest (files in EP-rank order) and
  // renames the staging directory into place. `manifest.files` is filled here.
  void commit(const std::vector<WrittenShard>& my_files, io::Manifest manifest);

  // Collective, after every rank closed (fsynced) its files, for an output that is not one
  // of our checkpoints (export's Hugging Face directory): rank 0 runs `finish` on the
  // staging directory (the files only it writes, a check of the whole), then renames it
  // into place. A failure of either throws on every rank; nothing is committed.
  void commit_directory(const std::function<void(const std::filesystem::path& staging)>& finish);

 private:
  runtime::Group group_;
  OutputSpec spec_;
  std::filesystem::path staging_;
  std::string checkpoint_id_;
  std::unique_ptr<fs::OutputOwner> owner_;  // rank 0 only
};

}  // namespace eplb::job
