#include "eplb/engine/generate.hpp"

#include "eplb/core/clock.hpp"
#include "eplb/engine/agreement.hpp"
#include "eplb/engine/checkpoint_output.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/placement/placement.hpp"

namespace eplb::engine {
namespace {

// One layer of one shard, written with one call per tensor.
void write_synthetic_layer(const placement::Placement& p, const GenerateOptions& options,
                           int32_t ep_rank, int32_t layer_idx, io::ShardWriter& writer,
                           std::vector<std::vector<std::byte>>& rows) {
  const int32_t num_rows = p.num_slots_per_rank;
  const auto& map = p.physical_to_logical_map[layer_idx];
  std::span<const int32_t> ids(map.data() + static_cast<size_t>(ep_rank) * num_rows, num_rows);
  std::vector<std::vector<uint64_t>> sums(options.tensors.size());
  std::vector<std::span<const std::byte>> views;
  for (size_t t = 0; t < options.tensors.size(); ++t) {
    const auto& spec = options.tensors[t];
    const size_t bytes = spec.row_bytes();
    rows[t].resize(bytes * num_rows);
    for (int32_t row = 0; row < num_rows; ++row) {
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
  capture(problems, [&] {
    p = placement::load_placement(options.placement,
                                  {options.placement.string(), options.ep_size, {}, {}});
  });
  agree_identical(session.comm(), problems);

  CheckpointOutput output(session.comm(), options.output, options.force);
  GenerateReport report;
  std::vector<std::filesystem::path> my_files;
  core::ProblemList write_problems(core::ErrorKind::kIo);
  capture(write_problems, [&] {
    std::vector<std::vector<std::byte>> rows(options.tensors.size());
    for (int32_t rank = session.rank(); rank < p.ep_size; rank += session.size()) {
      auto path = output.staging() / io::shard_file_name(rank);
      io::ShardWriter writer(path, {rank, p.ep_size, p.num_layers(), p.num_slots_per_rank,
                                    options.tensors, output.checkpoint_id()});
      for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
        write_synthetic_layer(p, options, rank, layer, writer, rows);
        report.bytes_written +=
            static_cast<long long>(io::expert_bytes(options.tensors)) * p.num_slots_per_rank;
      }
      writer.close();
      my_files.push_back(path);
    }
  });
  agree(session.comm(), write_problems);
  output.commit(my_files, io::Manifest{options.tensors, p, {}, {}});

  report.bytes_written = runtime::all_sum(session.comm(), {report.bytes_written})[0];
  report.num_files = p.ep_size;
  report.seconds = core::seconds_since(start);
  return report;
}

}  // namespace eplb::engine
