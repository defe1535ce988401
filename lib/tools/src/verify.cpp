#include "eplb/tools/verify.hpp"

#include <fmt/format.h>

#include <map>
#include <sstream>

#include "eplb/core/clock.hpp"
#include "eplb/core/progress.hpp"
#include "eplb/core/to_size.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/runtime/deadline.hpp"

namespace eplb::tools {
namespace {

namespace fs = std::filesystem;

struct ShardCheck {
  const io::Manifest& manifest;
  const VerifyOptions& options;
  core::ProblemList& problems;
  std::vector<std::string>& replica_lines;  // "layer expert slot h0 h1 ..."
  VerifyReport& report;
  core::Progress& progress;
  std::chrono::milliseconds timeout;  // --timeout: bounds each HDF5 metadata step
};

void check_row(const ShardCheck& c, const io::ShardReader& shard, int32_t layer, int32_t row,
               int32_t expert, const std::vector<std::vector<std::byte>>& data,
               const std::vector<std::vector<uint64_t>>& sums) {
  const auto& info = shard.info();
  const int32_t slot = info.ep_rank * info.num_slots_per_rank + row;
  const size_t r = core::to_size(row);
  std::string line = fmt::format("{} {} {}", layer, expert, slot);
  std::vector<std::byte> expected;
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    const auto& spec = info.tensors[t];
    std::span<const std::byte> bytes(data[t].data() + spec.row_bytes() * r, spec.row_bytes());
    auto where = [&] {
      return fmt::format("'{}' layer {}, slot {} (logical expert {}), tensor '{}'",
                         shard.path().string(), layer, slot, expert, spec.name);
    };
    uint64_t have = io::checksum(bytes);
    if (have != sums[t][r]) {
      c.problems.add(fmt::format("{}: checksum mismatch (recorded {:016x}, computed {:016x})",
                                 where(), sums[t][r], have));
    }
    if (expert < 0 &&
        std::any_of(bytes.begin(), bytes.end(), [](std::byte b) { return b != std::byte{0}; })) {
      c.problems.add(where() + ": empty slot is not all zeros");
    }
    if (expert >= 0 && c.options.seed) {
      expected.resize(bytes.size());
      io::fill_synthetic(*c.options.seed, layer, expert, spec, expected);
      if (!std::equal(bytes.begin(), bytes.end(), expected.begin())) {
        c.problems.add(where() + fmt::format(": bytes differ from the synthetic data of seed {}",
                                             *c.options.seed));
      }
    }
    line += fmt::format(" {}", have);
    c.report.bytes_checked += static_cast<long long>(bytes.size());
  }
  if (expert >= 0) c.replica_lines.push_back(std::move(line));
  ++c.report.slots_checked;
}

void check_shard(const ShardCheck& c, int32_t rank) {
  const auto& placement = c.manifest.placement;
  const fs::path path = c.options.checkpoint / io::shard_file_name(rank);
  // Size and whole-file xxh3 first (verify reads every byte anyway): a shard that differs
  // from its manifest entry is never given to HDF5, whose parser a damaged file can crash.
  if (static_cast<size_t>(rank) < c.manifest.files.size() &&
      !io::check_file_entry(path, c.manifest.files[core::to_size(rank)], UINT64_MAX, c.problems)) {
    return;
  }
  // HDF5 parses the file's metadata here and for each layer's ids below: bounded by
  // --timeout (a damaged file can make it loop for good); reading the rows is not.
  io::ShardReader shard = [&] {
    const runtime::StuckGuard guard(c.timeout, fmt::format("opening '{}'", path.string()));
    return io::ShardReader(path);
  }();
  const auto& info = shard.info();
  if (info.ep_rank != rank || info.ep_size != placement.ep_size ||
      info.num_layers != placement.num_layers() ||
      info.num_slots_per_rank != placement.num_slots_per_rank ||
      info.tensors != c.manifest.tensors) {
    c.problems.add(
        fmt::format("'{}': attributes or tensors differ from the manifest", path.string()));
    return;
  }
  if (info.checkpoint_id != c.manifest.checkpoint_id) {
    c.problems.add(
        fmt::format("'{}' belongs to checkpoint {}, but the manifest describes "
                    "checkpoint {}",
                    path.string(), info.checkpoint_id.empty() ? "(none)" : info.checkpoint_id,
                    c.manifest.checkpoint_id.empty() ? "(none)" : c.manifest.checkpoint_id));
  }
  std::vector<std::vector<std::byte>> data(info.tensors.size());
  std::vector<std::vector<uint64_t>> sums(info.tensors.size());
  for (int32_t layer = 0; layer < info.num_layers; ++layer) {
    auto ids = [&] {
      const runtime::StuckGuard guard(
          c.timeout, fmt::format("reading layer {} of '{}'", layer, path.string()));
      return shard.read_logical_ids(layer);
    }();
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      data[t].resize(info.tensors[t].row_bytes() * core::to_size(info.num_slots_per_rank));
      shard.read_tensor(layer, t, data[t]);
      sums[t] = shard.read_checksums(layer, t);
    }
    for (int32_t row = 0; row < info.num_slots_per_rank; ++row) {
      int32_t want = placement.expert_at(layer, rank, row);
      const int32_t id = ids[core::to_size(row)];
      if (id != want) {
        c.problems.add(
            fmt::format("'{}' layer {}, slot {}: holds logical expert {}, the "
                        "placement says {}",
                        path.string(), layer, rank * info.num_slots_per_rank + row, id, want));
      }
      check_row(c, shard, layer, row, id, data, sums);
    }
    long long layer_bytes = 0;
    for (const auto& tensor : data) layer_bytes += static_cast<long long>(tensor.size());
    c.progress.advance(1, layer_bytes);
  }
}

// Rank 0: all slots holding one logical expert in a layer must hold the same bytes.
void check_replicas(const std::vector<std::string>& lines, core::ProblemList& problems) {
  std::map<std::pair<int, int>, std::pair<int, std::string>>
      first;  // (layer, expert) -> slot, sums
  for (const auto& line : lines) {
    std::istringstream in(line);
    int layer = 0, expert = 0, slot = 0;
    in >> layer >> expert >> slot;
    std::string sums;
    std::getline(in, sums);
    auto [it, inserted] = first.try_emplace({layer, expert}, slot, sums);
    if (!inserted && it->second.second != sums) {
      problems.add(
          fmt::format("layer {}: logical expert {} holds different bytes in slot {} and "
                      "slot {}",
                      layer, expert, it->second.first, slot));
    }
  }
}

}  // namespace

VerifyReport verify(const runtime::MpiSession& session, const VerifyOptions& options) {
  const auto start = core::Clock::now();
  io::Manifest manifest;
  core::ProblemList problems(core::ErrorKind::kVerify);
  bool ok = job::capture(problems, [&] { manifest = io::load_manifest(options.checkpoint); });
  if (ok && options.placement) {
    job::capture(problems, [&] {
      // A placement without ep_size or expert count takes the checkpoint's.
      auto given = placement::load_placement(
          *options.placement, {options.placement->string(), options.ep_size,
                               manifest.placement.ep_size, manifest.placement.num_logical_experts});
      if (!placement::same_slots(given, manifest.placement)) {
        problems.add(fmt::format("'{}' holds a different placement than '{}'",
                                 options.checkpoint.string(), options.placement->string()));
      }
    });
  }
  job::agree_identical(session.group(), problems, "loading the manifest and placement");

  VerifyReport report;
  std::vector<std::string> replica_lines;
  core::ProblemList shard_problems(core::ErrorKind::kVerify);
  // Rank 0 shows its own shards' progress; every process has as many to within one.
  const int32_t num_shards = manifest.placement.ep_size;
  const int32_t my_shards = (num_shards - session.rank() + session.size() - 1) / session.size();
  auto progress = core::Progress::for_leader(
      "verify", int64_t{std::max(my_shards, 0)} * manifest.placement.num_layers(), "layer");
  ShardCheck check{manifest, options,  shard_problems,   replica_lines,
                   report,   progress, session.timeout()};
  for (int32_t rank = session.rank(); rank < num_shards; rank += session.size()) {
    job::capture(shard_problems, [&] { check_shard(check, rank); });
  }
  progress.finish();
  auto all_lines =
      runtime::gather_lines(session.group(), replica_lines, "gathering the replica checksums");
  if (session.rank() == 0) check_replicas(all_lines, shard_problems);
  // Every problem becomes a verification failure, whatever kind the reader threw.
  core::ProblemList verdict(core::ErrorKind::kVerify);
  verdict.append(shard_problems);
  job::agree(session.group(), verdict, "the verdict");

  auto sums = runtime::all_sum(session.group(), {report.slots_checked, report.bytes_checked},
                               "the report's totals");
  report.slots_checked = sums[0];
  report.bytes_checked = sums[1];
  report.num_files = manifest.placement.ep_size;
  report.seconds = core::seconds_since(start);
  return report;
}

}  // namespace eplb::tools
