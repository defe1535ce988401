// One layer of one EP rank in host memory: per tensor, [num_rows, row_bytes] contiguous
// (the HDF5 dataset layout, so a layer is read or written with one call per tensor),
// plus one checksum per row per tensor. Local.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/io/tensor.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::engine {

class LayerBuffer {
 public:
  // Memory comes from the transport (pinned for NCCL) and is reused for every layer.
  LayerBuffer(transport::Transport& transport, const std::vector<io::TensorSpec>& tensors,
              int32_t num_rows);
  // The memory one buffer of these tensors and rows takes (what bytes() will say).
  static size_t bytes_for(const std::vector<io::TensorSpec>& tensors, int32_t num_rows);

  int32_t num_rows() const { return num_rows_; }
  size_t num_tensors() const { return offsets_.size(); }
  size_t row_bytes(size_t tensor_idx) const { return row_bytes_[tensor_idx]; }
  std::span<std::byte> tensor(size_t tensor_idx) const;
  std::byte* row(size_t tensor_idx, int32_t row_idx) const;
  size_t bytes() const { return memory_.size(); }

  // checksums[tensor][row]: recorded (old layers) or expected (new layers).
  std::vector<std::vector<uint64_t>> checksums;

 private:
  transport::HostBuffer memory_;
  int32_t num_rows_;
  std::vector<size_t> offsets_;
  std::vector<size_t> row_bytes_;
};

// Local: checks every tensor of new row `row` (of EP rank `ep_rank`, layer `layer_idx`)
// against its expected checksum in `rows.checksums`, the recorded checksum of its source
// slot. Each mismatch adds a kComm problem naming the layer, the slot, the logical expert,
// the tensor and the source (the sending EP rank or a local copy).
void check_new_row(const LayerBuffer& rows, int32_t row, const plan::RowPlan& rp, int32_t layer_idx,
                   int32_t ep_rank, const std::vector<io::TensorSpec>& tensors,
                   core::ProblemList& problems);

}  // namespace eplb::engine
