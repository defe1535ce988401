#include "eplb/job/checkpoint_output.hpp"

#include <algorithm>

#include "eplb/core/log.hpp"
#include "eplb/fs/publish.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::job {
namespace fs = std::filesystem;

CheckpointOutput::CheckpointOutput(const runtime::MpiSession& session, OutputSpec spec)
    : group_(session.group()),
      spec_(std::move(spec)),
      staging_(eplb::fs::staging_path_for(spec_.path)) {
  // Rank 0 creates and publishes what every rank writes: on several hosts they must all
  // see the directory it lies in. Before anything is created there.
  check_shared_directories(session, {output_parent(spec_.path)});
  core::ProblemList problems(core::ErrorKind::kUsage);
  if (core::log::is_leader()) {
    capture(problems,
            [&] { owner_ = std::make_unique<eplb::fs::OutputOwner>(spec_.path, spec_.force); });
  }
  // On failure the owner was never made: nothing of anybody else's can be removed.
  agree(group_, problems, "taking ownership of the output");
  // The staging directory lies next to the output, on the filesystem of its parent. On
  // failure the owner removes the (empty) staging directory and releases the name.
  check_free_space(group_, output_parent(spec_.path).path, spec_.space, spec_.what);
  // NOTE: every rank derives the same id from the same identity text; no communication.
  checkpoint_id_ = io::checkpoint_id_for(spec_.identity);
}

CheckpointOutput::~CheckpointOutput() = default;

namespace {

// "name size xxh3" per file, so that rank 0 can assemble the manifest.
std::vector<std::string> describe_files(const std::vector<WrittenShard>& files,
                                        core::ProblemList& problems) {
  std::vector<std::string> lines;
  for (const auto& file : files) {
    capture(problems, [&] {
      // The hash the writer folded into its writes, or the file read back.
      if (!file.xxh3) {
        core::log::detail("'{}': whole-file xxh3 not folded into the writes; reading the file",
                          file.path.string());
      }
      auto entry = file.xxh3 ? io::FileEntry{file.path.filename().string(),
                                             fs::file_size(file.path), *file.xxh3}
                             : io::describe_file(file.path);
      lines.push_back(entry.name + " " + std::to_string(entry.size) + " " +
                      std::to_string(entry.xxh3));
    });
  }
  return lines;
}

std::vector<io::FileEntry> parse_file_lines(const std::vector<std::string>& lines) {
  std::vector<io::FileEntry> entries;
  for (const auto& line : lines) {
    io::FileEntry entry;
    char name[256] = {};
    unsigned long long size = 0, hash = 0;
    EPLB_ASSERT(std::sscanf(line.c_str(), "%255s %llu %llu", name, &size, &hash) == 3);
    entry.name = name;
    entry.size = size;
    entry.xxh3 = hash;
    entries.push_back(entry);
  }
  // Shard names carry the zero-padded EP rank, so name order is rank order.
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

}  // namespace

void CheckpointOutput::commit(const std::vector<WrittenShard>& my_files, io::Manifest manifest) {
  core::ProblemList problems(core::ErrorKind::kIo);
  auto lines = describe_files(my_files, problems);
  agree(group_, problems, "describing the written shards");
  auto all_lines = runtime::gather_lines(group_, lines, "gathering the shard descriptions");
  core::ProblemList commit_problems(core::ErrorKind::kIo);
  if (core::log::is_leader()) {
    capture(commit_problems, [&] {
      manifest.files = parse_file_lines(all_lines);
      manifest.checkpoint_id = checkpoint_id_;
      eplb::fs::write_file_atomic(staging_ / io::kManifestName, io::to_json(manifest));
      owner_->commit(eplb::fs::OutputModes::like(spec_.mode_like));
    });
  }
  agree(group_, commit_problems, "commit: manifest and rename");
}

void CheckpointOutput::commit_directory(const std::function<void(const fs::path&)>& finish) {
  core::ProblemList problems(core::ErrorKind::kIo);
  if (core::log::is_leader()) {
    capture(problems, [&] {
      finish(staging_);
      owner_->commit(eplb::fs::OutputModes::like(spec_.mode_like));
    });
  }
  agree(group_, problems, "committing the output");
}

}  // namespace eplb::job
