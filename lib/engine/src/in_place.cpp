// The in-place rebalance, narrated: take the checkpoint (lock, finish a previous update,
// journal directory) -> load -> validate -> plan -> for each layer (read the source rows
// only, verify them, agree, exchange, fill, verify, journal the changed rows: their bytes,
// or, where the new logical expert's bytes stay intact in the checkpoint until the row is
// written, a copy record while the bytes stay in memory) -> commit every journal, agree ->
// overwrite in two waves (copy records, agree, journaled rows), agree -> manifest -> remove
// the journal. A reader thread reads and verifies the source rows of the next layers (as
// many as the staging budget holds, up to 3), and a journal thread writes the journal
// entries of the layers before it (from a ring of new rows, as deep), while the main
// thread exchanges this one.
//
// NOTE: no shard byte is written before every rank's journal is committed and the ranks
// have agreed on it; recovery (io::recover_journal) relies on it to roll an incomplete
// journal back.
#include "eplb/engine/in_place.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>

#include "eplb/core/clock.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/core/interrupt.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/progress.hpp"
#include "eplb/exchange/layer_exchange.hpp"
#include "eplb/fs/direct_io.hpp"
#include "eplb/io/journal.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/io/shard_layout.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/placement/elastic.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/plan/in_place_sources.hpp"
#include "eplb/runtime/deadline.hpp"
#include "inputs.hpp"
#include "layer_buffer.hpp"
#include "layer_step.hpp"
#include "serial_worker.hpp"

namespace eplb::engine {
namespace {

namespace fs = std::filesystem;
using core::Clock;
using core::seconds_since;
// The frame of a collective command (lib/job).
using job::agree;
using job::agree_identical;
using job::at_layer;
using job::capture;
using job::check_free_space;

// Rank 0's hold on the checkpoint for the whole update. Until keep(), the journal is
// removed on failure or signal (nothing was overwritten); after, it stays for recovery.
class JournalOwner {
 public:
  explicit JournalOwner(const fs::path& checkpoint) : checkpoint_(checkpoint), lock_(checkpoint) {
    recovered_ = io::recover_journal(checkpoint_);
    io::create_journal_dir(checkpoint_);
    on_signal_.emplace([this] { discard(); });
  }
  ~JournalOwner() {
    on_signal_.reset();
    discard();
  }
  JournalOwner(const JournalOwner&) = delete;
  JournalOwner& operator=(const JournalOwner&) = delete;

  io::JournalOutcome recovered() const { return recovered_; }
  // Rank 0's journal is committed: from now on only recovery decides its fate.
  void keep() { kept_ = true; }
  // The update is complete: the journal goes.
  void finish() {
    io::remove_journal_dir(checkpoint_);
    kept_ = true;
  }

 private:
  void discard() noexcept {
    if (kept_.exchange(true)) return;
    try {
      io::remove_journal_dir(checkpoint_);
    } catch (...) {  // the next run rolls an incomplete journal back
    }
  }
  fs::path checkpoint_;
  io::CheckpointLock lock_;
  io::JournalOutcome recovered_ = io::JournalOutcome::kNone;
  std::atomic<bool> kept_{false};
  std::optional<core::interrupt::Cleanup> on_signal_;
};

// Seconds per named phase, in the order first timed: where an update's time goes.
class Phases {
 public:
  void add(const std::string& name, double seconds) {
    for (auto& [n, s] : phases_) {
      if (n == name) {
        s += seconds;
        return;
      }
    }
    phases_.emplace_back(name, seconds);
  }
  // Runs `step` and adds its time to `name`.
  template <typename F>
  void time(const std::string& name, F&& step) {
    const auto start = Clock::now();
    struct Add {
      Phases* self;
      const std::string& name;
      Clock::time_point start;
      ~Add() { self->add(name, seconds_since(start)); }
    } add{this, name, start};
    step();
  }
  // Collective: the maximum over ranks of each phase (every rank times the same phases).
  std::vector<std::pair<std::string, double>> reduced(const runtime::Group& group) const {
    std::vector<long long> micros;
    for (const auto& p : phases_) micros.push_back(static_cast<long long>(p.second * 1e6));
    const auto maxes = runtime::all_max(group, micros, "the in-place phases");
    std::vector<std::pair<std::string, double>> out;
    for (size_t i = 0; i < phases_.size(); ++i) {
      out.emplace_back(phases_[i].first, static_cast<double>(maxes[i]) / 1e6);
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, double>> phases_;
};

// The copy pipeline's counters, where bytes_written are the bytes journaled (and as many
// overwritten in the shards) and seconds_write covers the journal, then the overwrite.
struct Counters : StepCounters {
  long long rows_rewritten = 0;
  long long rows_journaled = 0;
  long long rows_from_source = 0;     // copy records: rolled forward from a source slot
  long long rows_from_journaled = 0;  // of those, from the old bytes of a journaled row
  long long rows_over_budget = 0;     // could have been, but did not fit in memory: journaled
  long long bytes_journaled = 0;
};

// The layers of one process: per hosted EP rank a ring of old-row buffers (the layers the
// reader thread reads ahead), a ring of new-row buffers (filled only where a row is needed;
// the journal thread writes earlier layers' entries from them), and one journal.
class InPlaceUpdate {
 public:
  // `host_budget`: the host memory the layer buffers and the rows kept in memory for copy
  // records may take together (--max-staging-bytes, less the device staging); rows that
  // would not fit are journaled.
  InPlaceUpdate(const runtime::MpiSession& session, Inputs& inputs, const plan::Plan& plan,
                transport::Transport& transport, const std::string& checkpoint_id, Phases& phases,
                size_t host_budget);
  // Joins the reader and the journal thread before the buffers they use are freed.
  ~InPlaceUpdate() {
    journal_thread_.reset();
    reader_.reset();
  }
  InPlaceUpdate(const InPlaceUpdate&) = delete;
  InPlaceUpdate& operator=(const InPlaceUpdate&) = delete;

  void run_layer(int32_t layer_idx);
  // Collective: the checkpoint id patch, the file descriptions, rank 0's manifest, every
  // journal committed; returns once every rank's is.
  void commit_journals(JournalOwner* owner, bool hash_all_files);
  // Collective: overwrites this process's shards from their journals and agrees.
  void apply();
  const Counters& counters() const { return counters_; }
  const std::string& manifest_text() const { return manifest_text_; }
  int32_t read_depth() const { return static_cast<int32_t>(reads_.size()); }
  int32_t journal_depth() const { return static_cast<int32_t>(journals_.size()); }
  // The layer buffers' host memory: the rings of old and new rows, the trailers, and the
  // memory reserved for the rows of copy records.
  size_t host_staging_bytes() const { return host_staging_bytes_ + reserved_copy_bytes_; }

 private:
  struct Hosted {
    int32_t ep_rank = 0;
    fs::path path;
    io::ShardLayout layout;
    std::unique_ptr<io::RowFile> file;
    std::deque<LayerBuffer> old_ring;  // layer l's source rows in old_ring[l % read depth]
    std::deque<LayerBuffer> new_ring;  // layer l's new rows in new_ring[l % journal depth]
    LayerBuffer* old_rows = nullptr;   // the layer being exchanged: set by run_layer
    LayerBuffer* new_rows = nullptr;
    std::unique_ptr<io::JournalWriter> journal;
  };
  // What one layer's journal job writes for one hosted EP rank (index as hosted_), from the
  // layer's new rows: the journaled rows and the copy records (row, source slot), chosen by
  // the main thread.
  struct JournalRows {
    std::vector<int32_t> journaled;
    std::vector<std::pair<int32_t, int32_t>> copies;
  };
  struct JournalJob : detail::LayerJob {
    std::vector<JournalRows> rows;
  };
  Hosted* hosted(int32_t ep_rank);
  // The runs of old rows of `h` that layer `layer_idx` needs: those sent to peers and those
  // copied locally. Unchanged rows are neither read nor written.
  std::vector<std::pair<int32_t, int32_t>> source_runs(const Hosted& h, int32_t layer_idx) const;
  // Queues the reads of layer `layer_idx` on the reader thread; collect_read waits for them.
  void post_read(int32_t layer_idx);
  void collect_read(int32_t layer_idx);
  void read_sources(Hosted& h, int32_t layer_idx, detail::LayerJob& job) const;
  // The layer's changed rows, through the one exchange body, then each checked against
  // the checksum of its source slot.
  void exchange(int32_t layer_idx);
  void verify(const Hosted& h, int32_t layer_idx);
  // Collective: every slot's recorded checksums of layer `layer_idx`, on every rank.
  void share_recorded_checksums(int32_t layer_idx);
  // Whether changed row `row` of `h` can be a copy record from stable slot `source_slot`:
  // the slot's recorded checksums are the row's expected ones, and its bytes fit in memory.
  bool can_copy(const Hosted& h, int32_t row, int32_t source_slot);
  // Main thread: chooses how each changed row of the layer is journaled, and queues the
  // writes on the journal thread; collect_journals waits for them, through a layer.
  void post_journal(int32_t layer_idx);
  void collect_journals(int32_t through_layer);
  // Journal thread.
  void journal_layer(const Hosted& h, const JournalRows& rows, int32_t layer_idx,
                     detail::LayerJob& job) const;

  const runtime::MpiSession& session_;
  Inputs& inputs_;
  const plan::Plan& plan_;
  transport::Transport& transport_;
  std::string checkpoint_id_;
  std::vector<Hosted> hosted_;
  std::vector<size_t> row_bytes_;
  std::vector<uint64_t> zero_row_checksums_;
  std::optional<exchange::LayerExchange> exchange_;
  std::string manifest_text_;
  // [EP rank][layer][tensor] (flattened): where each shard's tensors lie, for copy records.
  std::vector<long long> tensor_offsets_;
  // This layer: every slot's recorded checksums [slot * tensors + t].
  std::vector<long long> recorded_checksums_;
  std::vector<std::vector<plan::InPlaceRow>> layer_classes_;  // [layer][global slot]
  size_t hold_budget_ = 0;  // bytes of rows this process may keep in memory for copies
  size_t held_bytes_ = 0;
  size_t reserved_copy_bytes_ = 0;  // reserved by the journals for the copy records' rows
  core::ProblemList problems_{core::ErrorKind::kIo};
  Counters counters_;
  Phases& phases_;
  std::vector<detail::LayerJob> reads_;  // one per position of the old rows' ring
  std::vector<JournalJob> journals_;     // one per position of the new rows' ring
  int32_t next_journal_to_collect_ = 0;
  bool journal_failed_ = false;  // the journal thread's: later layers are not journaled
  size_t host_staging_bytes_ = 0;
  // NOTE: last, and reset first by the destructor: their jobs in flight use hosted_'s
  // buffers and journals.
  std::unique_ptr<detail::SerialWorker> reader_;
  std::unique_ptr<detail::SerialWorker> journal_thread_;
};

// Sorted runs [first, last] of consecutive rows: one read or one patch each.
std::vector<std::pair<int32_t, int32_t>> runs_of(std::vector<int32_t> rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  std::vector<std::pair<int32_t, int32_t>> runs;
  for (int32_t row : rows) {
    if (!runs.empty() && runs.back().second + 1 == row) {
      runs.back().second = row;
    } else {
      runs.emplace_back(row, row);
    }
  }
  return runs;
}

InPlaceUpdate::InPlaceUpdate(const runtime::MpiSession& session, Inputs& inputs,
                             const plan::Plan& plan, transport::Transport& transport,
                             const std::string& checkpoint_id, Phases& phases, size_t host_budget)
    : session_(session),
      inputs_(inputs),
      plan_(plan),
      transport_(transport),
      checkpoint_id_(checkpoint_id),
      phases_(phases) {
  const auto& tensors = inputs.tensors;
  hosted_.resize(inputs.my_ranks.size());
  for (const auto& spec : tensors) {
    row_bytes_.push_back(spec.row_bytes());
    zero_row_checksums_.push_back(io::zero_checksum(spec.row_bytes()));
  }
  // Unchanged rows stay where they are in the shard: nothing is read, copied or written.
  exchange_.emplace(plan, inputs.process_map, session.rank(), row_bytes_, transport,
                    exchange::ExchangeOptions{exchange::Unchanged::kKeep, zero_row_checksums_});
  const size_t trailer_bytes = exchange_->reserve_trailers();
  const size_t old_bytes =
      hosted_.size() * LayerBuffer::bytes_for(tensors, plan.old_num_slots_per_rank);
  const size_t new_bytes =
      hosted_.size() * LayerBuffer::bytes_for(tensors, plan.new_num_slots_per_rank);
  // As deep as the copy pipeline within the budget: the reader thread reads layers ahead
  // into the old rows' ring while the journal thread writes earlier layers' entries from
  // the new rows' ring; what is left of the budget keeps the rows of copy records.
  const PipelineDepth pipeline = choose_depth(old_bytes, new_bytes, trailer_bytes, host_budget,
                                              static_cast<int32_t>(plan.layers.size()));
  const int32_t depth = pipeline.old_layers;
  const int32_t journal_depth = pipeline.new_layers;
  reads_.resize(static_cast<size_t>(depth));
  journals_.resize(static_cast<size_t>(journal_depth));
  host_staging_bytes_ = pipeline.bytes;
  core::ProblemList problems(core::ErrorKind::kIo);
  for (size_t i = 0; i < hosted_.size(); ++i) {
    Hosted& h = hosted_[i];
    h.ep_rank = inputs.my_ranks[i];
    for (int32_t k = 0; k < depth; ++k) {
      h.old_ring.emplace_back(transport, tensors, plan.old_num_slots_per_rank);
    }
    for (int32_t k = 0; k < journal_depth; ++k) {
      h.new_ring.emplace_back(transport, tensors, plan.new_num_slots_per_rank);
    }
    capture(problems, [&] {
      const io::ShardReader& shard = *inputs.shards[i];
      h.path = shard.path();
      {  // HDF5 reads the dataset headers again: bounded like the first open (inputs.cpp)
        const runtime::StuckGuard guard(session.timeout(),
                                        fmt::format("reading the layout of '{}'", h.path.string()));
        h.layout = io::read_shard_layout(h.path, shard.info());
      }
      h.file = std::make_unique<io::RowFile>(h.path);
      h.journal = std::make_unique<io::JournalWriter>(inputs.input_dir, h.ep_rank, plan.new_ep_size,
                                                      h.path.filename(), h.layout.file_size);
    });
  }
  agree(session.group(), problems, "opening the shards and journals");
  // Every shard's tensor offsets, for the copy records (each rank fills in its own).
  const size_t num_layers = plan.layers.size();
  tensor_offsets_.assign(static_cast<size_t>(plan.new_ep_size) * num_layers * tensors.size(), 0);
  for (const auto& h : hosted_) {
    for (size_t l = 0; l < num_layers; ++l) {
      for (size_t t = 0; t < tensors.size(); ++t) {
        tensor_offsets_[(static_cast<size_t>(h.ep_rank) * num_layers + l) * tensors.size() + t] =
            static_cast<long long>(h.layout.layers[l].tensors[t]);
      }
    }
  }
  tensor_offsets_ = runtime::all_max(session.group(), tensor_offsets_, "sharing the shard layouts");
  hold_budget_ = host_budget > host_staging_bytes_ ? host_budget - host_staging_bytes_ : 0;
  // Which rows are copy records (pure), and memory for their bytes reserved at once.
  for (size_t l = 0; l < num_layers; ++l) {
    layer_classes_.push_back(plan::classify_in_place_layer(
        inputs.old_placement.physical_to_logical_map[l],
        inputs.new_placement.physical_to_logical_map[l], plan.new_num_slots_per_rank,
        /*two_waves=*/true));
  }
  size_t to_reserve = hold_budget_;
  const uint64_t row_bytes = io::expert_bytes(tensors);
  uint64_t copy_bytes = 0;     // rows that may be copy records, as can_copy() counts them
  uint64_t journal_bytes = 0;  // rows journaled whatever the budget
  for (auto& h : hosted_) {
    size_t needed = 0;
    for (const auto& rows : layer_classes_) {
      for (int32_t row = 0; row < plan.new_num_slots_per_rank; ++row) {
        const auto slot = static_cast<size_t>(h.ep_rank * plan.new_num_slots_per_rank + row);
        if (rows[slot].how == plan::RowRecovery::kJournaled) journal_bytes += row_bytes;
        if (rows[slot].how != plan::RowRecovery::kFromSource &&
            rows[slot].how != plan::RowRecovery::kFromJournaled) {
          continue;
        }
        copy_bytes += row_bytes;
        for (const auto bytes : row_bytes_)
          needed += static_cast<size_t>(eplb::fs::align_up(bytes));
      }
    }
    needed = std::min(needed, to_reserve);
    to_reserve -= needed;
    if (h.journal) {
      h.journal->reserve_copies(needed);
      reserved_copy_bytes_ += needed;
    }
  }
  // The journals must fit beside the checkpoint: at least the rows journaled whatever the
  // budget, and the copy records' rows that the budget cannot hold. Checked by rank 0 for
  // every process's journals before anything is written (kIo; the journals are removed).
  journal_bytes += copy_bytes > hold_budget_ ? copy_bytes - hold_budget_ : 0;
  const auto all_journals = runtime::all_sum(
      session.group(), {static_cast<long long>(journal_bytes)}, "sizing the journals")[0];
  check_free_space(session.group(), inputs.input_dir, static_cast<uint64_t>(all_journals),
                   "the journal of the update in place",
                   "make room, or copy it to another filesystem (--output)");
  // The layers' checksum arrays (a few hundred bytes each, read buffered) are asked for
  // all at once, so that the per-layer reads find them in the page cache; the rows
  // themselves are read with O_DIRECT (RowFile::read), past it.
  for (const auto& h : hosted_) {
    if (!h.file) continue;
    for (const auto& offsets : h.layout.layers) {
      for (const uint64_t at : offsets.checksums) {
        h.file->prefetch(at, static_cast<uint64_t>(plan.old_num_slots_per_rank) * 8);
      }
    }
  }
  core::fault::kill_point("journal-open");
  reader_ = std::make_unique<detail::SerialWorker>();
  journal_thread_ = std::make_unique<detail::SerialWorker>();
  for (int32_t layer = 0;
       layer < std::min<int32_t>(depth, static_cast<int32_t>(plan.layers.size())); ++layer) {
    post_read(layer);
  }
}

InPlaceUpdate::Hosted* InPlaceUpdate::hosted(int32_t ep_rank) {
  for (auto& h : hosted_) {
    if (h.ep_rank == ep_rank) return &h;
  }
  return nullptr;
}

std::vector<std::pair<int32_t, int32_t>> InPlaceUpdate::source_runs(const Hosted& h,
                                                                    int32_t layer_idx) const {
  const auto& layer = plan_.layers[static_cast<size_t>(layer_idx)];
  std::vector<int32_t> needed;
  for (const auto& m : layer.messages) {
    if (m.src_rank == h.ep_rank) needed.insert(needed.end(), m.src_rows.begin(), m.src_rows.end());
  }
  for (const auto& rp : layer.rows[static_cast<size_t>(h.ep_rank)]) {
    if (rp.source == plan::RowSource::kLocal) needed.push_back(rp.src_row);
  }
  return runs_of(needed);
}

void InPlaceUpdate::post_read(int32_t layer_idx) {
  detail::LayerJob& job = reads_[static_cast<size_t>(layer_idx) % reads_.size()];
  job.post(*reader_, layer_idx, [this, &job] {
    for (auto& h : hosted_) read_sources(h, job.layer, job);
  });
}

void InPlaceUpdate::collect_read(int32_t layer_idx) {
  detail::LayerJob& job = reads_[static_cast<size_t>(layer_idx) % reads_.size()];
  job.wait(*reader_, layer_idx);
  problems_.append(job.problems);
  counters_.bytes_read += job.bytes;
  counters_.seconds_read += job.seconds;
  phases_.add("read", job.seconds);
}

void InPlaceUpdate::run_layer(int32_t layer_idx) {
  // The main thread's waits for the reader ("read" is the reader's own time) and for the
  // journal thread to free the new rows' buffer ("journal_write" is that thread's time).
  phases_.time("read_wait", [&] { collect_read(layer_idx); });
  phases_.time("journal_wait", [&] { collect_journals(layer_idx - journal_depth()); });
  for (auto& h : hosted_) {
    h.old_rows = &h.old_ring[static_cast<size_t>(layer_idx) % reads_.size()];
    h.new_rows = &h.new_ring[static_cast<size_t>(layer_idx) % journals_.size()];
  }
  phases_.time("agree_layer", [&] {
    agree(session_.group(), problems_,
          fmt::format("layer {}: agreement before the exchange", layer_idx));
    share_recorded_checksums(layer_idx);
  });
  phases_.time("exchange", [&] { at_layer(layer_idx, [&] { exchange(layer_idx); }); });
  for (const auto& h : hosted_) {
    phases_.time("fill_verify", [&] { verify(h, layer_idx); });
  }
  // This layer's old rows are used up: read a later layer into them.
  const auto ahead = static_cast<size_t>(layer_idx) + reads_.size();
  if (ahead < plan_.layers.size()) post_read(static_cast<int32_t>(ahead));
  phases_.time("journal_plan", [&] { post_journal(layer_idx); });
}

// On the reader thread: reads the layer's checksums and only the old rows this layer
// needs (those sent to peers and those copied locally) into its ring buffer, and checks
// them. Unchanged rows are neither read nor written. Touches nothing but `job` and that
// buffer.
void InPlaceUpdate::read_sources(Hosted& h, int32_t layer_idx, detail::LayerJob& job) const {
  if (!h.file) return;
  LayerBuffer& old_rows = h.old_ring[static_cast<size_t>(layer_idx) % reads_.size()];
  const auto& offsets = h.layout.layers[static_cast<size_t>(layer_idx)];
  const auto runs = source_runs(h, layer_idx);
  const bool read = capture(job.problems, [&] {
    for (size_t t = 0; t < old_rows.num_tensors(); ++t) {
      auto& sums = old_rows.checksums[t];
      h.file->read(offsets.checksums[t], std::as_writable_bytes(std::span(sums)));
      for (const auto& [first, last] : runs) {
        const size_t n = static_cast<size_t>(last - first + 1) * old_rows.row_bytes(t);
        h.file->read(offsets.tensors[t] + static_cast<uint64_t>(first) * old_rows.row_bytes(t),
                     {old_rows.row(t, first), n});
        job.bytes += static_cast<long long>(n);
      }
    }
  });
  if (!read) return;
  const int32_t first_slot = h.ep_rank * old_rows.num_rows();
  for (const auto& [first, last] : runs) {
    for (int32_t row = first; row <= last; ++row) {
      for (size_t t = 0; t < old_rows.num_tensors(); ++t) {
        const uint64_t have = io::checksum({old_rows.row(t, row), old_rows.row_bytes(t)});
        const uint64_t want = old_rows.checksums[t][static_cast<size_t>(row)];
        if (have == want) continue;
        job.problems.set_kind_if_worse(core::ErrorKind::kInput);
        job.problems.add(fmt::format(
            "'{}' layer {}, slot {} (logical expert {}), tensor '{}': checksum mismatch "
            "(recorded {:016x}, computed {:016x})",
            h.path.string(), layer_idx, first_slot + row,
            inputs_.old_placement.expert_at(layer_idx, h.ep_rank, row), inputs_.tensors[t].name,
            want, have));
      }
    }
  }
}

void InPlaceUpdate::exchange(int32_t layer_idx) {
  const auto start = Clock::now();
  const exchange::ExchangeRows rows{
      [this](int32_t, int32_t ep_rank, size_t t, int32_t row) {
        return hosted(ep_rank)->old_rows->row(t, row);
      },
      [this](int32_t, int32_t ep_rank, size_t t, int32_t row) {
        return hosted(ep_rank)->new_rows->row(t, row);
      },
      [this](int32_t, int32_t ep_rank, size_t t, int32_t row) {
        return hosted(ep_rank)->old_rows->checksums[t][static_cast<size_t>(row)];
      },
      [this](int32_t, int32_t ep_rank, size_t t, int32_t row) -> uint64_t& {
        return hosted(ep_rank)->new_rows->checksums[t][static_cast<size_t>(row)];
      }};
  exchange::HostCopier copier;
  const int32_t layers[] = {layer_idx};
  const exchange::ExchangeCounts counts = exchange_->run(layers, rows, copier);
  counters_.bytes_sent += counts.bytes_sent;
  counters_.bytes_received += counts.bytes_received;
  counters_.rows_copied_locally += counts.rows_copied_locally;
  counters_.rows_rewritten += counts.rows_rewritten;
  counters_.seconds_exchange += seconds_since(start);
}

// Every changed row against the checksum of its source slot; unchanged rows keep their
// recorded checksum (their bytes are not in memory).
void InPlaceUpdate::verify(const Hosted& h, int32_t layer_idx) {
  const auto& rows =
      plan_.layers[static_cast<size_t>(layer_idx)].rows[static_cast<size_t>(h.ep_rank)];
  for (int32_t row = 0; row < h.new_rows->num_rows(); ++row) {
    const auto& rp = rows[static_cast<size_t>(row)];
    if (rp.source == plan::RowSource::kUnchanged) continue;
    check_new_row(*h.new_rows, row, rp, layer_idx, h.ep_rank, inputs_.tensors, problems_);
  }
}

void InPlaceUpdate::share_recorded_checksums(int32_t layer_idx) {
  const auto num_tensors = row_bytes_.size();
  const auto per_rank = static_cast<size_t>(plan_.old_num_slots_per_rank);
  recorded_checksums_.assign(static_cast<size_t>(plan_.new_ep_size) * per_rank * num_tensors, 0);
  for (const auto& h : hosted_) {
    for (size_t row = 0; row < per_rank; ++row) {
      for (size_t t = 0; t < num_tensors; ++t) {
        // NOTE: one rank contributes each entry, so the sum is its value, bit for bit.
        recorded_checksums_[(static_cast<size_t>(h.ep_rank) * per_rank + row) * num_tensors + t] =
            static_cast<long long>(h.old_rows->checksums[t][row]);
      }
    }
  }
  recorded_checksums_ =
      runtime::all_sum(session_.group(), recorded_checksums_,
                       fmt::format("layer {}: sharing the recorded checksums", layer_idx));
}

bool InPlaceUpdate::can_copy(const Hosted& h, int32_t row, int32_t source_slot) {
  const LayerBuffer& new_rows = *h.new_rows;
  size_t bytes = 0;
  for (size_t t = 0; t < row_bytes_.size(); ++t) {
    const auto recorded = static_cast<uint64_t>(
        recorded_checksums_[static_cast<size_t>(source_slot) * row_bytes_.size() + t]);
    if (recorded != new_rows.checksums[t][static_cast<size_t>(row)]) return false;
    bytes += row_bytes_[t];
  }
  if (held_bytes_ + bytes > hold_budget_) {
    ++counters_.rows_over_budget;
    return false;
  }
  held_bytes_ += bytes;
  return true;
}

// The changed rows go to the journal: their bytes, or a copy record where the new logical
// expert keeps a stable slot (the bytes stay in memory until the overwrite); then the
// layer's checksums and logical ids. Chosen here, written by the journal thread.
void InPlaceUpdate::post_journal(int32_t layer_idx) {
  JournalJob& job = journals_[static_cast<size_t>(layer_idx) % journals_.size()];
  job.rows.assign(hosted_.size(), {});
  for (size_t i = 0; i < hosted_.size() && problems_.empty(); ++i) {
    const Hosted& h = hosted_[i];
    JournalRows& out = job.rows[i];
    const auto& rows =
        plan_.layers[static_cast<size_t>(layer_idx)].rows[static_cast<size_t>(h.ep_rank)];
    const int32_t first_slot = h.ep_rank * h.new_rows->num_rows();
    for (size_t row = 0; row < rows.size(); ++row) {
      if (rows[row].source == plan::RowSource::kUnchanged) continue;
      const auto r = static_cast<int32_t>(row);
      const plan::InPlaceRow& how =
          layer_classes_[static_cast<size_t>(layer_idx)][static_cast<size_t>(first_slot + r)];
      EPLB_ASSERT(how.how != plan::RowRecovery::kUnchanged);
      const bool copy =
          how.how == plan::RowRecovery::kFromSource || how.how == plan::RowRecovery::kFromJournaled;
      if (copy && can_copy(h, r, how.source_slot)) {
        out.copies.emplace_back(r, how.source_slot);
        if (how.how == plan::RowRecovery::kFromJournaled) ++counters_.rows_from_journaled;
      } else {
        out.journaled.push_back(r);
      }
    }
    counters_.rows_journaled += static_cast<long long>(out.journaled.size());
    counters_.rows_from_source += static_cast<long long>(out.copies.size());
  }
  job.post(*journal_thread_, layer_idx, [this, &job] {
    for (size_t i = 0; i < hosted_.size() && !journal_failed_; ++i) {
      journal_layer(hosted_[i], job.rows[i], job.layer, job);
    }
    if (!job.problems.empty()) journal_failed_ = true;
  });
}

void InPlaceUpdate::collect_journals(int32_t through_layer) {
  for (; next_journal_to_collect_ <= through_layer; ++next_journal_to_collect_) {
    JournalJob& job = journals_[static_cast<size_t>(next_journal_to_collect_) % journals_.size()];
    job.wait(*journal_thread_, next_journal_to_collect_);
    problems_.append(job.problems);
    counters_.seconds_write += job.seconds;
    phases_.add("journal_write", job.seconds);
    if (job.problems.empty())
      core::fault::kill_point("in-place-layer-" + std::to_string(job.layer));
  }
}

// On the journal thread: touches nothing but `h`'s journal, `job` and what it reads.
void InPlaceUpdate::journal_layer(const Hosted& h, const JournalRows& rows, int32_t layer_idx,
                                  detail::LayerJob& job) const {
  if (rows.journaled.empty() && rows.copies.empty()) return;
  const LayerBuffer& new_rows = h.new_ring[static_cast<size_t>(layer_idx) % journals_.size()];
  const auto& offsets = h.layout.layers[static_cast<size_t>(layer_idx)];
  const size_t num_layers = plan_.layers.size();
  capture(job.problems, [&] {
    for (size_t t = 0; t < new_rows.num_tensors(); ++t) {
      const uint64_t row_bytes = new_rows.row_bytes(t);
      for (const auto& [first, last] : runs_of(rows.journaled)) {
        const size_t n = static_cast<size_t>(last - first + 1) * row_bytes;
        h.journal->add_patch(offsets.tensors[t] + static_cast<uint64_t>(first) * row_bytes,
                             {new_rows.row(t, first), n});
        job.bytes += static_cast<long long>(n);
      }
      for (const auto& [row, source_slot] : rows.copies) {
        const int32_t source_rank = source_slot / new_rows.num_rows();
        const int32_t source_row = source_slot % new_rows.num_rows();
        const auto source_tensor =
            static_cast<uint64_t>(tensor_offsets_[(static_cast<size_t>(source_rank) * num_layers +
                                                   static_cast<size_t>(layer_idx)) *
                                                      new_rows.num_tensors() +
                                                  t]);
        h.journal->add_copy(offsets.tensors[t] + static_cast<uint64_t>(row) * row_bytes,
                            {new_rows.row(t, row), static_cast<size_t>(row_bytes)},
                            io::shard_file_name(source_rank),
                            source_tensor + static_cast<uint64_t>(source_row) * row_bytes,
                            new_rows.checksums[t][static_cast<size_t>(row)]);
      }
      h.journal->add_patch(offsets.checksums[t], std::as_bytes(std::span(new_rows.checksums[t])));
    }
    const auto& map = inputs_.new_placement.physical_to_logical_map[static_cast<size_t>(layer_idx)];
    std::span<const int32_t> ids(
        map.data() + static_cast<size_t>(h.ep_rank) * static_cast<size_t>(new_rows.num_rows()),
        static_cast<size_t>(new_rows.num_rows()));
    h.journal->add_patch(offsets.logical_ids, std::as_bytes(ids));
    h.journal->start_writeback();
  });
}

void InPlaceUpdate::commit_journals(JournalOwner* owner, bool hash_all_files) {
  phases_.time("journal_wait",
               [&] { collect_journals(static_cast<int32_t>(plan_.layers.size()) - 1); });
  const auto describe_start = Clock::now();
  agree(session_.group(), problems_, "journaling the last layer");
  // Each shard's new size (unchanged) and whole-file xxh3: computed from the file and the
  // journal's patches when that is cheap or asked for, else left out (docs/FORMAT.md).
  std::vector<std::string> lines;
  core::ProblemList problems(core::ErrorKind::kIo);
  for (auto& h : hosted_) {
    capture(problems, [&] {
      h.journal->add_patch(h.layout.checkpoint_id_offset,
                           std::as_bytes(std::span(checkpoint_id_.data(), checkpoint_id_.size())));
      const bool hash = hash_all_files || h.layout.file_size <= kCheapFileBytes;
      const uint64_t xxh3 = hash ? h.journal->patched_file_xxh3(h.path) : 0;
      lines.push_back(fmt::format("{} {} {} {}", h.path.filename().string(), h.layout.file_size,
                                  xxh3, hash ? 1 : 0));
    });
  }
  agree(session_.group(), problems, "describing the updated shards");
  const auto all = runtime::gather_lines(session_.group(), lines, "gathering shard descriptions");
  if (core::log::is_leader()) {
    io::Manifest manifest{
        inputs_.tensors, inputs_.new_placement, {}, checkpoint_id_, inputs_.hugging_face};
    for (const auto& line : all) {
      char name[256] = {};
      unsigned long long size = 0, hash = 0;
      int known = 0;
      EPLB_ASSERT(std::sscanf(line.c_str(), "%255s %llu %llu %d", name, &size, &hash, &known) == 4);
      manifest.files.push_back(io::FileEntry{name, size, hash, known != 0});
    }
    std::sort(manifest.files.begin(), manifest.files.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    manifest_text_ = io::to_json(manifest);
  }
  phases_.add("describe", seconds_since(describe_start));
  const auto start = Clock::now();
  for (auto& h : hosted_) {
    capture(problems_, [&] {
      if (h.ep_rank == 0) h.journal->add_manifest(manifest_text_);
      h.journal->commit();
      counters_.bytes_journaled += static_cast<long long>(h.journal->patch_bytes());
      counters_.bytes_written +=
          static_cast<long long>(h.journal->patch_bytes() + h.journal->copy_bytes());
    });
  }
  counters_.seconds_write += seconds_since(start);
  phases_.add("journal_commit", seconds_since(start));
  core::fault::kill_point("journal-written");
  // NOTE: once rank 0's own journal is committed, another rank may already be past the
  // agreement below and overwriting: only recovery may decide the journal's fate then.
  if (owner != nullptr && problems_.empty()) owner->keep();
  phases_.time("agree_commit",
               [&] { agree(session_.group(), problems_, "committing the journals"); });
  core::fault::kill_point("journal-committed");
}

// Wave 1: every row rolled forward from a source (copy records), durable on every rank;
// wave 2: the journaled rows and arrays. NOTE: a copy's source may be a journaled row of any
// shard, whose old bytes recovery needs until every copy is durable.
void InPlaceUpdate::apply() {
  const auto start = Clock::now();
  for (auto& h : hosted_) {
    h.file.reset();
    capture(problems_, [&] { h.journal->apply_copies(h.path); });
  }
  core::fault::kill_point("wave-1");
  phases_.add("overwrite", seconds_since(start));
  phases_.time("agree_wave_1",
               [&] { agree(session_.group(), problems_, "writing the rows copied (wave 1)"); });
  core::fault::kill_point("wave-2");
  const auto patches_start = Clock::now();
  for (auto& h : hosted_) {
    capture(problems_, [&] { h.journal->apply_patches(h.path); });
  }
  for (auto& shard : inputs_.shards) shard.reset();
  counters_.seconds_write += seconds_since(start);
  phases_.add("overwrite", seconds_since(patches_start));
  core::fault::kill_point("applied");
  phases_.time("agree_overwrite",
               [&] { agree(session_.group(), problems_, "overwriting the changed rows"); });
}

RebalanceReport reduce(const runtime::MpiSession& session, const Counters& c,
                       RebalanceReport report) {
  // bytes_written: overwritten in the shards; bytes_journaled: of those, through the journal.
  job::RankFigures figures;
  add_counters(figures, c, report);
  long long rewritten = 0, over_budget = 0;
  figures.sum(rewritten, c.rows_rewritten);
  figures.sum(report.in_place_rows_journaled, c.rows_journaled);
  figures.sum(report.in_place_rows_from_source, c.rows_from_source);
  figures.sum(over_budget, c.rows_over_budget);
  figures.sum(report.in_place_bytes_journaled, c.bytes_journaled);
  figures.sum(report.in_place_rows_from_journaled, c.rows_from_journaled);
  figures.reduce(session.group(), "the report's figures");
  core::log::detail(
      "in place: {} rows rewritten: {} journaled, {} rolled forward from a source (copy "
      "records, their bytes kept in memory): {} from a stable slot, {} from the old bytes of a "
      "journaled row; {} bytes overwritten, {} of them journaled",
      rewritten, report.in_place_rows_journaled, report.in_place_rows_from_source,
      report.in_place_rows_from_source - report.in_place_rows_from_journaled,
      report.in_place_rows_from_journaled, report.bytes_written, report.in_place_bytes_journaled);
  if (over_budget > 0) {
    core::log::detail(
        "in place: {} rows that could have been copy records were journaled: keeping their "
        "bytes in memory would exceed --max-staging-bytes",
        over_budget);
  }
  return report;
}

// Rank 0, after rolling an interrupted update forward: true when the checkpoint now holds
// the new placement and not the old one (the same command run again after a crash).
bool holds_new_placement(const RebalanceOptions& options) {
  try {
    const io::Manifest manifest = io::load_manifest(options.input);
    const auto pair = placement::load_pair(pair_options_of(options, &manifest));
    return placement::same_slots(manifest.placement, pair.new_placement) &&
           !placement::same_slots(manifest.placement, pair.old_placement);
  } catch (const core::Error&) {
    return false;  // load_inputs reports it
  }
}

// Usage (identical on every rank): in place keeps the shard files, so their shape too.
void check_same_shape(const runtime::MpiSession& session, const Inputs& inputs) {
  core::ProblemList problems(core::ErrorKind::kUsage);
  const auto& o = inputs.old_placement;
  const auto& n = inputs.new_placement;
  if (o.ep_size != n.ep_size || o.num_slots_per_rank != n.num_slots_per_rank) {
    problems.add(fmt::format(
        "--in-place keeps the shard files, so the old and new placements must have the same "
        "ep_size and slots per rank (old {} x {}, new {} x {}): rebalance into a new "
        "checkpoint with --output instead",
        o.ep_size, o.num_slots_per_rank, n.ep_size, n.num_slots_per_rank));
  }
  agree_identical(session.group(), problems, "checking the placements for an update in place");
}

}  // namespace

RebalanceReport rebalance_in_place(const runtime::MpiSession& session,
                                   const RebalanceOptions& options) {
  const auto start = Clock::now();
  RebalanceReport report;
  Phases phases;
  auto phase_start = Clock::now();
  // The time since the previous lap, as phase `name`.
  const auto lap = [&](const std::string& name) {
    phases.add(name, seconds_since(phase_start));
    phase_start = Clock::now();
  };

  // Every host must see the checkpoint: each process rewrites its own shards there, rank
  // 0 publishes the manifest (lib/job, as for every writer).
  job::check_shared_directories(session, {{options.input, "checkpoint directory", false}});

  // Take the checkpoint: rank 0 locks it, finishes an update a dead run left, and creates
  // the journal directory. Readers that find the directory wait for the lock.
  core::ProblemList problems(core::ErrorKind::kIo);
  std::unique_ptr<JournalOwner> owner;
  if (core::log::is_leader()) {
    capture(problems, [&] { owner = std::make_unique<JournalOwner>(options.input); });
  }
  agree(session.group(), problems, "taking the checkpoint for an update in place");
  const bool rolled_forward = owner && owner->recovered() == io::JournalOutcome::kRolledForward;
  if (runtime::all_max(session.group(), {rolled_forward && holds_new_placement(options) ? 1 : 0},
                       "checking the recovered placement")[0] != 0) {
    core::log::info(
        "the interrupted update finished above already gave '{}' the new placement: nothing "
        "left to do",
        options.input.string());
    report.backend = "no";
    report.backend_reason = "nothing to move";
    report.seconds_total = seconds_since(start);
    return report;
  }

  lap("take");

  // Load and validate: placements, manifest, this rank's shard; same shape old and new.
  Inputs inputs = load_inputs(session, options);
  check_same_shape(session, inputs);
  lap("load");
  report.num_layers = inputs.old_placement.num_layers();

  // Plan: the same global plan as a copy; unchanged rows stay where they are.
  // (The shapes are the same: layer_bytes is that of the new layer, as of the old.)
  const plan::Plan plan = plan_exchange(session, options, inputs, report).plan;
  lap("plan");

  // Transport and journals. The new id is the one a copy would get: same bytes, same id.
  // The staging budget covers host and device memory (make_disk_transport).
  const auto setup_start = Clock::now();
  DiskTransport disk = make_disk_transport(session, options, report);
  auto& transport = disk.transport;
  const std::string checkpoint_id = io::checkpoint_id_for("run\n" + inputs.input_identity +
                                                          placement::to_json(inputs.new_placement));
  InPlaceUpdate update(session, inputs, plan, *transport, checkpoint_id, phases, disk.host_budget);
  report.seconds_setup = seconds_since(setup_start);
  core::log::detail(
      "in place: source rows of {} layer(s) read ahead of the exchange, new rows of {} "
      "journaled behind it (rank 0)",
      update.read_depth(), update.journal_depth());
  lap("setup");

  // For each layer: read the source rows, verify, exchange, fill, verify, journal.
  auto progress = core::Progress::for_leader("rebalance in place", report.num_layers, "layer");
  for (int32_t layer_idx = 0; layer_idx < report.num_layers; ++layer_idx) {
    update.run_layer(layer_idx);
    progress.advance(1, 0);
  }
  progress.finish();

  // Commit: every journal durable and agreed on, then overwrite, then the manifest.
  const auto commit_start = Clock::now();
  update.commit_journals(owner.get(), options.check_files);
  update.apply();
  phase_start = Clock::now();
  core::ProblemList manifest_problems(core::ErrorKind::kIo);
  if (owner) {
    capture(manifest_problems, [&] {
      io::replace_manifest(inputs.input_dir, update.manifest_text());
      lap("manifest");
      core::fault::kill_point("in-place-manifest");
      owner->finish();
      lap("journal_remove");
    });
  } else {
    lap("manifest");
    lap("journal_remove");
  }
  agree(session.group(), manifest_problems, "writing the manifest");
  report.seconds_commit = seconds_since(commit_start);
  transport->close();
  owner.reset();  // releases the lock
  lap("close");

  report = reduce(session, update.counters(), report);
  const auto staging = runtime::all_max(
      session.group(), {static_cast<long long>(update.host_staging_bytes())}, "the staging peak");
  report.peak_host_staging_bytes = staging[0];
  report.peak_staging_bytes = staging[0] + report.device_staging_bytes;
  report.layers_read_ahead = update.read_depth();
  report.layers_written_behind = update.journal_depth();
  report.in_place_phases = phases.reduced(session.group());
  report.seconds_total = seconds_since(start);
  for (const auto& [name, seconds] : report.in_place_phases) {
    core::log::detail("in place: {:<16} {:.3f} s (max over ranks)", name, seconds);
  }
  return report;
}

void finish_interrupted_update(const runtime::MpiSession& session, const fs::path& checkpoint) {
  core::ProblemList problems(core::ErrorKind::kIo);
  if (core::log::is_leader() && io::has_journal(checkpoint)) {
    capture(problems, [&] {
      try {
        io::CheckpointLock lock(checkpoint);
        io::recover_journal(checkpoint);
      } catch (const core::Error& e) {
        if (e.kind() != core::ErrorKind::kUsage) throw;
        throw core::Error(core::ErrorKind::kUsage,
                          fmt::format("'{}' is being updated in place by another run: {}",
                                      checkpoint.string(), e.problems().front()));
      }
    });
  }
  agree(session.group(), problems, "finishing an interrupted update in place");
}

}  // namespace eplb::engine
