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

// Messages travel in the wire format of wire_format.hpp (rows, then the source slots'
// checksums as a trailer).
class LayerStepper {
 public:
  // Collective (creating this process's output shards is agreed on). Keeps references to
  // everything passed in.
  LayerStepper(const runtime::MpiSession& session, Inputs& inputs, const plan::Plan& plan,
               transport::Transport& transport, const std::filesystem::path& staging,
               const std::string& checkpoint_id);
  ~LayerStepper();
  LayerStepper(const LayerStepper&) = delete;
  LayerStepper& operator=(const LayerStepper&) = delete;

  // Collective: every process runs every layer, in order. Problems found while reading or
  // verifying are agreed on before the exchange; a failed exchange throws kComm.
  void run_layer(int32_t layer_idx);
  // Collective: agrees on the last layer, closes (fsyncs) this process's shards and
  // returns the files it wrote.
  std::vector<std::filesystem::path> finish();

  const StepCounters& counters() const { return counters_; }

 private:
  // One EP rank this process hosts: its buffers (one layer each), input and output shard.
  struct Hosted {
    int32_t ep_rank = 0;
    const io::ShardReader* shard = nullptr;  // null beyond the old ep_size
    std::optional<LayerBuffer> old_rows;     // if it holds old slots
    std::optional<LayerBuffer> new_rows;     // if it holds new slots
    std::optional<io::ShardWriter> writer;
    std::filesystem::path output_file;
  };
  Hosted* hosted(int32_t ep_rank);
  void read_and_check_sources(Hosted& h, int32_t layer_idx);
  void exchange(const plan::LayerPlan& layer);
  void copy_local_message(const plan::Message& m);
  void fill_local_rows(Hosted& h, const plan::LayerPlan& layer);
  void verify_new_rows(Hosted& h, int32_t layer_idx);
  void write_layer(Hosted& h, int32_t layer_idx);

  const runtime::MpiSession& session_;
  Inputs& inputs_;
  const plan::Plan& plan_;
  transport::Transport& transport_;
  std::vector<Hosted> hosted_;
  transport::HostBuffer trailers_;  // checksum trailers of all messages of a layer
  std::vector<size_t> row_bytes_;   // per tensor
  std::vector<uint64_t> zero_row_checksums_;
  core::ProblemList problems_{core::ErrorKind::kIo};
  StepCounters counters_;
};

}  // namespace eplb::engine
