// One rank's part of one layer: read its old rows, verify them, exchange, fill local
// rows, verify every new row against the checksum of its source slot, write.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/engine/inputs.hpp"
#include "eplb/engine/layer_buffer.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::engine {

struct StepCounters {
  long long bytes_read = 0;
  long long bytes_written = 0;
  long long bytes_sent = 0;
  long long bytes_received = 0;
  long long rows_copied_locally = 0;
  double seconds_read = 0;
  double seconds_exchange = 0;
  double seconds_write = 0;
};

// NOTE: the message byte layout every rank relies on: for each entry of Message (in its
// ascending logical expert order), each tensor's row in the checkpoint's tensor order;
// then a trailer with the source slot's recorded xxh3 for each (entry, tensor), so the
// receiver can check what it got against the checksum of the slot it came from.
class LayerStepper {
 public:
  // Collective (creating this rank's output shard is agreed on). Keeps references to
  // everything passed in.
  LayerStepper(const runtime::MpiSession& session, Inputs& inputs, const plan::Plan& plan,
               transport::Transport& transport, const std::filesystem::path& staging);
  ~LayerStepper();
  LayerStepper(const LayerStepper&) = delete;
  LayerStepper& operator=(const LayerStepper&) = delete;

  // Collective: every rank runs every layer, in order. Problems found while reading or
  // verifying are agreed on before the exchange; a failed exchange throws kComm.
  void run_layer(int32_t layer_idx);
  // Collective: agrees on the last layer, closes (fsyncs) this rank's shard and returns
  // the files this rank wrote.
  std::vector<std::filesystem::path> finish();

  const StepCounters& counters() const { return counters_; }

 private:
  void read_and_check_sources(int32_t layer_idx);
  void exchange(const plan::LayerPlan& layer);
  void fill_local_rows(const plan::LayerPlan& layer);
  void verify_new_rows(int32_t layer_idx);
  void write_layer(int32_t layer_idx);

  const runtime::MpiSession& session_;
  Inputs& inputs_;
  const plan::Plan& plan_;
  transport::Transport& transport_;
  const int32_t rank_;
  std::optional<LayerBuffer> old_;  // this rank's old rows (if it holds any)
  std::optional<LayerBuffer> new_;  // this rank's new rows (if it holds any)
  transport::HostBuffer trailers_;  // checksum trailers of all messages of a layer
  std::vector<uint64_t> zero_row_checksums_;
  std::optional<io::ShardWriter> writer_;
  std::filesystem::path output_file_;
  core::ProblemList problems_{core::ErrorKind::kIo};
  StepCounters counters_;
};

}  // namespace eplb::engine
