#include "eplb/engine/layer_buffer.hpp"

#include "eplb/core/error.hpp"

namespace eplb::engine {
namespace {

// Keep every tensor 4 KiB-aligned (the buffer is page-aligned): io::ShardWriter writes it
// with O_DIRECT only from aligned memory; also friendlier to DMA and vector copies.
size_t aligned_tensor_bytes(const io::TensorSpec& spec, int32_t num_rows) {
  constexpr size_t kAlign = 4096;
  return (spec.row_bytes() * static_cast<size_t>(num_rows) + kAlign - 1) / kAlign * kAlign;
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
  return memory_.data() + offsets_[tensor_idx] + row_bytes_[tensor_idx] * row_idx;
}

}  // namespace eplb::engine
