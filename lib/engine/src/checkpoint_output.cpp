#include "eplb/engine/checkpoint_output.hpp"

#include <algorithm>

#include "eplb/core/log.hpp"
#include "eplb/engine/agreement.hpp"
#include "eplb/io/atomic_dir.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::engine {
namespace fs = std::filesystem;

CheckpointOutput::CheckpointOutput(const runtime::Group& group, fs::path output, bool force)
    : group_(group), output_(std::move(output)), force_(force) {
  staging_ = io::staging_path_for(output_);
  core::ProblemList problems(core::ErrorKind::kUsage);
  if (core::log::is_leader()) {
    capture(problems, [&] { io::create_staging(staging_, output_, force_); });
  }
  try {
    agree(group_, problems, "creating the output's staging directory");
  } catch (...) {
    // Nothing was created (or creation failed): make sure the destructor removes nothing
    // that belongs to somebody else, e.g. a staging directory left by an earlier run.
    committed_ = true;
    throw;
  }
}

CheckpointOutput::~CheckpointOutput() {
  if (!committed_ && core::log::is_leader()) io::remove_tree_noexcept(staging_);
}

namespace {

// "name size xxh3" per file, so that rank 0 can assemble the manifest.
std::vector<std::string> describe_files(const std::vector<fs::path>& files,
                                        core::ProblemList& problems) {
  std::vector<std::string> lines;
  for (const auto& file : files) {
    capture(problems, [&] {
      auto entry = io::describe_file(file);
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

void CheckpointOutput::commit(const std::vector<fs::path>& my_files, io::Manifest manifest) {
  core::ProblemList problems(core::ErrorKind::kIo);
  auto lines = describe_files(my_files, problems);
  agree(group_, problems, "commit: describing the shards");
  auto all_lines = runtime::gather_lines(group_, lines, "commit: gathering the shard list");
  core::ProblemList commit_problems(core::ErrorKind::kIo);
  if (core::log::is_leader()) {
    capture(commit_problems, [&] {
      manifest.files = parse_file_lines(all_lines);
      io::write_file_atomic(staging_ / io::kManifestName, io::to_json(manifest));
      io::commit_staging(staging_, output_, force_);
    });
  }
  agree(group_, commit_problems, "commit: manifest and rename");
  committed_ = true;
}

}  // namespace eplb::engine
