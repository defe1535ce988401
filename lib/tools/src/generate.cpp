#include "eplb/tools/generate.hpp"

#include "eplb/core/clock.hpp"
#include "eplb/core/progress.hpp"
#include "eplb/core/to_size.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/checkpoint_output.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::tools {
namespace {

// One layer of one shard, written with one call per tensor.
void write_synthetic_layer(const placement::Placement& p, const GenerateOptions& options,
                           int32_t ep_rank, int32_t layer_idx, io::ShardWriter& writer,
                           std::vector<std::vector<std::byte>>& rows) {
  const size_t num_rows = core::to_size(p.num_slots_per_rank);
  const auto& map = p.physical_to_logical_map[core::to_size(layer_idx)];
  std::span<const int32_t> ids(map.data() + core::to_size(ep_rank) * num_rows, num_rows);
  std::vector<std::vector<uint64_t>> sums(options.tensors.size());
  std::vector<std::span<const std::byte>> views;
  for (size_t t = 0; t < options.tensors.size(); ++t) {
    const auto& spec = options.tensors[t];
    const size_t bytes = spec.row_bytes();
    rows[t].resize(bytes * num_rows);
    for (size_t row = 0; row < num_rows; ++row) {
      std::span<std::byte> out(rows[t].data() + bytes * row, bytes);
      if (ids[row] < 0) {
        std::fill(out.begin(), out.end(), std::byte{0});
      } else {
        io::fill_synthetic(options.seed, layer_idx, ids[row], spec, out);
      }
      sums[t].push_back(io::checksum(out));
    }
    views.emplace_back(rows[t]);
  }
  writer.write_layer(layer_idx, ids, views, sums);
}

}  // namespace

GenerateReport generate(const runtime::MpiSession& session, const GenerateOptions& options) {
  const auto start = core::Clock::now();
  placement::Placement p;
  core::ProblemList problems(core::ErrorKind::kInput);
  job::capture(problems, [&] {
    p = placement::load_placement(options.placement,
                                  {options.placement.string(), options.ep_size, {}, {}, {}});
  });
  job::agree_identical(session.group(), problems, "loading the placement");

  // Rank 0 publishes what every rank writes: on several hosts they must share the output
  // (checked by CheckpointOutput).
  job::CheckpointOutput output(
      session,
      {options.output, options.force,
       io::checkpoint_space(options.tensors, p.ep_size, p.num_layers(), p.num_slots_per_rank),
       "the new checkpoint",
       "generate\n" + io::to_string(options.tensors) + "\nseed " + std::to_string(options.seed) +
           "\n" + placement::to_json(p),
       std::nullopt});
  GenerateReport report;
  std::vector<job::WrittenShard> my_files;
  core::ProblemList write_problems(core::ErrorKind::kIo);
  job::capture(write_problems, [&] {
    std::vector<std::vector<std::byte>> rows(options.tensors.size());
    // Rank 0 shows its own shards' progress; every process has as many to within one.
    const int32_t my_shards = (p.ep_size - session.rank() + session.size() - 1) / session.size();
    auto progress =
        core::Progress::for_leader("generate", int64_t{my_shards} * p.num_layers(), "layer");
    for (int32_t rank = session.rank(); rank < p.ep_size; rank += session.size()) {
      auto path = output.staging() / io::shard_file_name(rank);
      io::ShardWriter writer(path, {rank, p.ep_size, p.num_layers(), p.num_slots_per_rank,
                                    options.tensors, output.checkpoint_id()});
      for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
        write_synthetic_layer(p, options, rank, layer, writer, rows);
        const auto layer_bytes =
            static_cast<long long>(io::expert_bytes(options.tensors)) * p.num_slots_per_rank;
        report.bytes_written += layer_bytes;
        progress.advance(1, layer_bytes);
      }
      writer.close();
      my_files.push_back({path, writer.file_xxh3()});
    }
    progress.finish();
  });
  job::agree(session.group(), write_problems, "writing the shards");
  output.commit(my_files, io::Manifest{options.tensors, p, {}, {}, std::nullopt});

  report.bytes_written =
      runtime::all_sum(session.group(), {report.bytes_written}, "the report's totals")[0];
  report.num_files = p.ep_size;
  report.seconds = core::seconds_since(start);
  return report;
}

}  // namespace eplb::tools
