#include "layer_buffer.hpp"

#include <fmt/format.h>

#include "eplb/core/error.hpp"
#include "eplb/fs/direct_io.hpp"

namespace eplb::engine {
namespace {

// Keep every tensor 4 KiB-aligned (the buffer is page-aligned): io::ShardWriter writes it
// with O_DIRECT only from aligned memory; also friendlier to DMA and vector copies.
size_t aligned_tensor_bytes(const io::TensorSpec& spec, int32_t num_rows) {
  return static_cast<size_t>(fs::align_up(spec.row_bytes() * static_cast<size_t>(num_rows)));
}

}  // namespace

size_t LayerBuffer::bytes_for(const std::vector<io::TensorSpec>& tensors, int32_t num_rows) {
  size_t total = 0;
  for (const auto& spec : tensors) total += aligned_tensor_bytes(spec, num_rows);
  return total == 0 ? 256 : total;
}

LayerBuffer::LayerBuffer(transport::Transport& transport,
                         const std::vector<io::TensorSpec>& tensors, int32_t num_rows)
    : num_rows_(num_rows) {
  size_t total = 0;
  for (const auto& spec : tensors) {
    offsets_.push_back(total);
    row_bytes_.push_back(spec.row_bytes());
    total += aligned_tensor_bytes(spec, num_rows);
  }
  memory_ = transport.allocate_host(bytes_for(tensors, num_rows));
  checksums.assign(tensors.size(), std::vector<uint64_t>(static_cast<size_t>(num_rows), 0));
}

std::span<std::byte> LayerBuffer::tensor(size_t tensor_idx) const {
  return {memory_.data() + offsets_[tensor_idx],
          row_bytes_[tensor_idx] * static_cast<size_t>(num_rows_)};
}

std::byte* LayerBuffer::row(size_t tensor_idx, int32_t row_idx) const {
  EPLB_ASSERT(row_idx >= 0 && row_idx < num_rows_);
  return memory_.data() + offsets_[tensor_idx] +
         row_bytes_[tensor_idx] * static_cast<size_t>(row_idx);  // >= 0: asserted above
}

void check_new_row(const LayerBuffer& rows, int32_t row, const plan::RowPlan& rp, int32_t layer_idx,
                   int32_t ep_rank, const std::vector<io::TensorSpec>& tensors,
                   core::ProblemList& problems) {
  const auto r = static_cast<size_t>(row);
  for (size_t t = 0; t < rows.num_tensors(); ++t) {
    const uint64_t have = io::checksum({rows.row(t, row), rows.row_bytes(t)});
    const uint64_t expected = rows.checksums[t][r];
    if (have == expected) continue;
    problems.set_kind_if_worse(core::ErrorKind::kComm);
    problems.add(fmt::format(
        "layer {}, slot {} (logical expert {}), tensor '{}': bytes do not match the "
        "checksum of their source slot (expected {:016x}, got {:016x}; source: {})",
        layer_idx, ep_rank * rows.num_rows() + row, rp.expert_id, tensors[t].name, expected, have,
        rp.peer >= 0 ? fmt::format("EP rank {}", rp.peer) : "local copy"));
  }
}

}  // namespace eplb::engine
