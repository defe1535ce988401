// The in-server library's engine: a plan executed in place on the caller's tensors, every
// layer at once (vLLM's rearrange_expert_weights_inplace) or one layer at a time in the
// background (its transfer_layer + move_from_buffer), through the one exchange body.
//
// Per layer, the rows that change land in a staging buffer first (received rows, rows
// filled from the rank's own old rows, empty rows), while every send reads the untouched
// tensors; then they are copied into place. Unchanged rows are never touched.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <vector>

#include "eplb/exchange/layer_exchange.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"
#include "row_memory.hpp"

namespace eplb::capi {

// One tensor of one layer on this rank: [num_rows][row_bytes], contiguous.
struct TensorRows {
  std::byte* data = nullptr;
  int64_t num_rows = 0;
  int64_t row_bytes = 0;
  uint64_t tag = 0;  // dtype and per-row shape identity; 0: not checked
};

struct RearrangeOptions {
  size_t staging_bytes = 0;  // 0: what the busiest layer needs
  bool profile = false;      // allocate and agree, move nothing
  // Every changed row's bytes checked against the checksum of the slot they came from
  // (core::row_hash, computed where the rows lie), and agreed on before any is placed.
  bool verify = true;
  std::chrono::milliseconds timeout{600000};
};

struct RearrangeReport {
  long long bytes_sent = 0;
  long long bytes_received = 0;
  long long rows_rewritten = 0;
  long long staging_bytes = 0;
  long long layers_per_exchange = 0;
  double seconds = 0;
};

class Rearranger {
 public:
  // Collective over `transport` (one process per EP rank: its size is the plan's
  // num_ep_ranks()): checks this rank's tensors (`layers[layer][k]`) against the plan,
  // agrees with every rank that the plan, the tensor count, row bytes, tags and memory kind
  // are the same everywhere, then allocates the staging. Throws core::Error(kInput) on
  // every rank when any rank found a problem (that rank's message names it, the others
  // name that rank), core::Error(kComm) when the agreement fails. Keeps references to
  // `transport` and `plan`.
  Rearranger(transport::Transport& transport, const plan::Plan& plan,
             std::vector<std::vector<TensorRows>> layers, const RearrangeOptions& options);
  // Waits for a started layer (within the timeout) before freeing the staging.
  ~Rearranger();
  Rearranger(const Rearranger&) = delete;
  Rearranger& operator=(const Rearranger&) = delete;

  // Collective: every layer, in groups that fit the staging; device work waits for
  // `caller_stream` first and is done on return.
  RearrangeReport rearrange(void* caller_stream);
  // Collective: starts layer `layer_idx` in the background (on the library's worker
  // thread) after the work on `caller_stream`. Throws core::Error(kUsage) if a layer is
  // started already.
  void start(int32_t layer_idx, void* caller_stream);
  // Local: whether the started layer has landed (false before); rethrows its failure.
  bool test(int32_t layer_idx);
  // Local: waits for the started layer within the timeout, then copies it into place on
  // `caller_stream` (enqueued) or, for host tensors, before returning.
  RearrangeReport finish(int32_t layer_idx, void* caller_stream);

  bool device() const { return memory_->device(); }
  size_t staging_bytes() const { return staging_bytes_; }

 private:
  void check_and_agree();
  // The exchange of `layers` into staging (rows of layers[i] at layer_offset_[i]).
  exchange::ExchangeCounts exchange_group(const std::vector<int32_t>& layers, void* caller_stream);
  // The copies into place of the changed rows of `layers` from staging.
  std::vector<RowCopy> placements(const std::vector<int32_t>& layers) const;
  std::byte* staging_row(size_t group_pos, int32_t layer_idx, size_t t, int32_t row) const;
  // With options_.verify: the landed rows of `layers` against their expected checksums, then
  // an agreement; throws core::Error(kComm) on every rank if any rank's rows do not match.
  void verify(const std::vector<int32_t>& layers);
  size_t sum_index(size_t group_pos, size_t t, int32_t row) const {
    return (group_pos * row_bytes_.size() + t) * static_cast<size_t>(num_rows_) +
           static_cast<size_t>(row);
  }
  void expect_started(int32_t layer_idx) const;

  transport::Transport& transport_;
  const plan::Plan& plan_;
  std::vector<std::vector<TensorRows>> layers_;
  RearrangeOptions options_;
  int32_t rank_ = 0;
  int32_t num_rows_ = 0;
  std::vector<size_t> row_bytes_;  // per tensor
  size_t expert_bytes_ = 0;        // one row of every tensor
  // [layer][row] -> this rank's staging slot of a changed row, or -1.
  std::vector<std::vector<int32_t>> slot_of_;
  std::vector<int32_t> changed_;              // [layer] changed rows of this rank
  std::vector<std::vector<int32_t>> groups_;  // the blocking call's layer groups
  std::unique_ptr<RowMemory> memory_;
  plan::ProcessMap map_;
  std::optional<exchange::LayerExchange> exchange_;
  std::byte* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  // Per position in the current group: the byte offset of that layer's staging.
  std::vector<size_t> group_offset_;
  int32_t started_ = -1;  // the layer in the background, or -1
  std::future<exchange::ExchangeCounts> pending_;
  std::optional<exchange::ExchangeCounts> landed_;
  // With verify, the current group's checksums: [group pos][tensor][row].
  std::vector<uint64_t> old_sums_, new_sums_;
};

}  // namespace eplb::capi
