// One rank's part of one layer: read its old rows, verify them, exchange, fill local
// rows, verify every new row against the checksum of its source slot, write. Overlapped:
// a reader thread reads (and checks) layers ahead of the exchange, a writer thread
// verifies and writes layers behind it, within a memory budget.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/exchange/layer_exchange.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/checkpoint_output.hpp"
#include "eplb/job/figures.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"
#include "inputs.hpp"
#include "layer_buffer.hpp"
#include "serial_worker.hpp"

namespace eplb::engine {

// How many layers of one process's EP ranks are held at once: `old_layers` buffers of old
// rows (the one being exchanged and those read ahead of it), `new_layers` of new rows (the
// one being filled and those still being written).
struct PipelineDepth {
  int32_t old_layers = 1;
  int32_t new_layers = 1;
  size_t bytes = 0;  // what they take, with `fixed_bytes`
  bool fits = true;  // false: even one of each exceeds the budget (used anyway)
  bool operator==(const PipelineDepth&) const = default;
};

// Pure. The deepest of (1,1), (2,1), (2,2), (3,2), (3,3) whose old_layers * old_bytes +
// new_layers * new_bytes + fixed_bytes fits `budget`, capped at the number of layers (at
// least 1). Below (1,1) the run cannot be split further: (1,1) with fits = false.
PipelineDepth choose_depth(size_t old_bytes, size_t new_bytes, size_t fixed_bytes, size_t budget,
                           int32_t num_layers);

struct StepCounters {
  long long bytes_read = 0;
  long long bytes_written = 0;
  long long bytes_sent = 0;
  long long bytes_received = 0;
  long long rows_copied_locally = 0;
  // Time spent by the reader thread reading and checking, by the main thread in the
  // exchange, and by the writer thread verifying and writing (and closing): they overlap.
  double seconds_read = 0;
  double seconds_exchange = 0;
  double seconds_write = 0;
};

// Local: registers the report's figures of `local` with `figures`: totals (bytes read,
// written and sent, rows copied locally) and maxima (the busiest rank's bytes sent or
// received, the slowest reads, exchange and writes, the peak RSS); figures.reduce() fills
// `report`.
void add_counters(job::RankFigures& figures, const StepCounters& local, RebalanceReport& report);

// Each layer moves through exchange::LayerExchange (rows, then the source slots' checksums
// as a trailer).
class LayerStepper {
 public:
  // Collective (creating this process's output shards is agreed on). Keeps references to
  // everything passed in. Its buffers, allocated here once, take at most `host_budget`
  // bytes (depth()), unless one old and one new layer alone exceed it (a warning then).
  // Starts reading the first layers.
  LayerStepper(const runtime::MpiSession& session, Inputs& inputs, const plan::Plan& plan,
               transport::Transport& transport, const std::filesystem::path& staging,
               const std::string& checkpoint_id, size_t host_budget);
  ~LayerStepper();
  LayerStepper(const LayerStepper&) = delete;
  LayerStepper& operator=(const LayerStepper&) = delete;

  // Collective: every process runs every layer, in order. Problems found while reading
  // this layer or writing earlier ones are agreed on before the exchange; a failed
  // exchange throws kComm. The layer's rows are then handed to the writer thread.
  void run_layer(int32_t layer_idx);
  // Collective: waits for the last writes, agrees on them, closes (fdatasyncs) this
  // process's shards and returns the files it wrote.
  std::vector<job::WrittenShard> finish();

  // Totals of the reads and writes finished so far (updated by run_layer and finish).
  const StepCounters& counters() const { return counters_; }
  const PipelineDepth& depth() const { return depth_; }

 private:
  // One EP rank this process hosts: its input and output shard.
  struct Hosted {
    int32_t ep_rank = 0;
    const io::ShardReader* shard = nullptr;  // null beyond the old ep_size
    bool has_old = false;                    // holds old slots
    bool has_new = false;                    // holds new slots
    std::optional<io::ShardWriter> writer;
    std::filesystem::path output_file;
  };
  // One layer's rows of every hosted EP rank (index as hosted_), and the job that fills
  // (old) or writes (new) them.
  struct Slot : detail::LayerJob {
    std::vector<std::optional<LayerBuffer>> rows;
  };
  size_t index_of(int32_t ep_rank) const;
  Slot& old_slot(int32_t layer_idx);
  Slot& new_slot(int32_t layer_idx);
  // Main thread: hand a slot to the reader / writer thread, and take the results back.
  void post_read(int32_t layer_idx);
  void collect_read(int32_t layer_idx);
  void post_write(int32_t layer_idx);
  void collect_writes(int32_t through_layer, bool block);
  // Reader thread.
  void read_and_check_sources(Slot& slot, size_t i);
  // Main thread.
  void exchange(int32_t layer_idx, Slot& old, Slot& fresh);
  // Writer thread.
  void verify_new_rows(Slot& slot, size_t i);
  void write_layer(Slot& slot, size_t i);

  const runtime::MpiSession& session_;
  Inputs& inputs_;
  const plan::Plan& plan_;
  transport::Transport& transport_;
  std::vector<Hosted> hosted_;
  std::vector<size_t> row_bytes_;  // per tensor
  std::vector<uint64_t> zero_row_checksums_;
  std::optional<exchange::LayerExchange> exchange_;
  core::ProblemList problems_{core::ErrorKind::kIo};
  StepCounters counters_;
  PipelineDepth depth_;
  std::vector<Slot> old_slots_;  // depth_.old_layers of them, layer l in l % size
  std::vector<Slot> new_slots_;
  int32_t next_write_to_collect_ = 0;
  bool write_failed_ = false;  // writer thread only: later layers are not written
  // Last, so destroyed first: their destructors drop queued jobs and join, before the
  // slots and shards those jobs use go away.
  std::unique_ptr<detail::SerialWorker> reader_;
  std::unique_ptr<detail::SerialWorker> writer_;
};

}  // namespace eplb::engine
