#include "layer_step.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>

#include "eplb/core/clock.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/report.hpp"
#include "eplb/core/units.hpp"
#include "eplb/job/agreement.hpp"
#include "serial_worker.hpp"

namespace eplb::engine {
namespace {

using core::Clock;
using core::seconds_since;
// The frame of a collective command (lib/job).
using job::agree;
using job::at_layer;
using job::capture;
using job::WrittenShard;

// Fault injection for the no-hang tests (docs/CLI.md): EPLB_FAULT_STALL=RANK:LAYER makes
// that rank stop responding before that layer, as a stuck peer would.
void maybe_stall(int32_t rank, int32_t layer_idx) {
  static const char* spec = std::getenv("EPLB_FAULT_STALL");
  int stall_rank = -1, stall_layer = -1;
  if (spec == nullptr || std::sscanf(spec, "%d:%d", &stall_rank, &stall_layer) != 2) return;
  if (stall_rank != rank || stall_layer != layer_idx) return;
  core::log::warn("EPLB_FAULT_STALL: rank {} stalls before layer {}", rank, layer_idx);
  std::this_thread::sleep_for(std::chrono::hours(24));
}

}  // namespace

PipelineDepth choose_depth(size_t old_bytes, size_t new_bytes, size_t fixed_bytes, size_t budget,
                           int32_t num_layers) {
  const auto cost = [&](int32_t o, int32_t n) {
    return static_cast<size_t>(o) * old_bytes + static_cast<size_t>(n) * new_bytes + fixed_bytes;
  };
  const int32_t cap = std::max<int32_t>(1, num_layers);
  PipelineDepth best{1, 1, cost(1, 1), cost(1, 1) <= budget};
  if (!best.fits) return best;
  constexpr std::pair<int32_t, int32_t> kSteps[] = {{2, 1}, {2, 2}, {3, 2}, {3, 3}};
  for (const auto& [o, n] : kSteps) {
    const int32_t old_layers = std::min(o, cap), new_layers = std::min(n, cap);
    if (cost(old_layers, new_layers) > budget) break;
    best = {old_layers, new_layers, cost(old_layers, new_layers), true};
  }
  return best;
}

LayerStepper::LayerStepper(const runtime::MpiSession& session, Inputs& inputs,
                           const plan::Plan& plan, transport::Transport& transport,
                           const std::filesystem::path& staging, const std::string& checkpoint_id,
                           size_t host_budget)
    : session_(session), inputs_(inputs), plan_(plan), transport_(transport) {
  const auto& tensors = inputs.tensors;
  hosted_.resize(inputs.my_ranks.size());
  core::ProblemList problems(core::ErrorKind::kIo);
  size_t old_bytes = 0, new_bytes = 0;  // one layer of every hosted EP rank
  for (size_t i = 0; i < hosted_.size(); ++i) {
    Hosted& h = hosted_[i];
    h.ep_rank = inputs.my_ranks[i];
    if (inputs.shards[i]) h.shard = &*inputs.shards[i];
    h.has_old = h.ep_rank < plan.old_ep_size;
    h.has_new = h.ep_rank < plan.new_ep_size;
    if (h.has_old) old_bytes += LayerBuffer::bytes_for(tensors, plan.old_num_slots_per_rank);
    if (!h.has_new) continue;
    new_bytes += LayerBuffer::bytes_for(tensors, plan.new_num_slots_per_rank);
    h.output_file = staging / io::shard_file_name(h.ep_rank);
    capture(problems, [&] {
      h.writer.emplace(
          h.output_file,
          io::ShardInfo{h.ep_rank, plan.new_ep_size, static_cast<int32_t>(plan.layers.size()),
                        plan.new_num_slots_per_rank, tensors, checkpoint_id});
    });
  }
  for (const auto& spec : tensors) row_bytes_.push_back(spec.row_bytes());
  for (const auto& spec : tensors)
    zero_row_checksums_.push_back(io::zero_checksum(spec.row_bytes()));
  exchange_.emplace(plan, inputs.process_map, session.rank(), row_bytes_, transport,
                    exchange::ExchangeOptions{exchange::Unchanged::kCopy, zero_row_checksums_});
  // The checksum trailers of the busiest layer, allocated once, counted in the budget.
  const size_t trailer_bytes = exchange_->reserve_trailers();
  depth_ = choose_depth(old_bytes, new_bytes, trailer_bytes, host_budget,
                        static_cast<int32_t>(plan.layers.size()));
  if (!depth_.fits) {
    core::log::warn(
        "--max-staging-bytes leaves {} of host memory, but one old and one new layer of this "
        "process's shards take {}: using that, without reading ahead",
        core::format_bytes(static_cast<double>(host_budget)),
        core::format_bytes(static_cast<double>(depth_.bytes)));
  }
  old_slots_.resize(static_cast<size_t>(depth_.old_layers));
  new_slots_.resize(static_cast<size_t>(depth_.new_layers));
  for (size_t i = 0; i < hosted_.size(); ++i) {
    for (Slot& slot : old_slots_) {
      slot.rows.resize(hosted_.size());
      if (hosted_[i].has_old) slot.rows[i].emplace(transport, tensors, plan.old_num_slots_per_rank);
    }
    for (Slot& slot : new_slots_) {
      slot.rows.resize(hosted_.size());
      if (hosted_[i].has_new) slot.rows[i].emplace(transport, tensors, plan.new_num_slots_per_rank);
    }
  }
  agree(session.group(), problems, "creating the output shards");
  core::fault::kill_point("shard-open");
  reader_ = std::make_unique<detail::SerialWorker>();
  writer_ = std::make_unique<detail::SerialWorker>();
  const int32_t num_layers = static_cast<int32_t>(plan.layers.size());
  for (int32_t layer = 0; layer < std::min(depth_.old_layers, num_layers); ++layer) {
    post_read(layer);
  }
}

LayerStepper::~LayerStepper() = default;

size_t LayerStepper::index_of(int32_t ep_rank) const {
  for (size_t i = 0; i < hosted_.size(); ++i) {
    if (hosted_[i].ep_rank == ep_rank) return i;
  }
  EPLB_ASSERT(false && "EP rank not hosted by this process");
  return 0;
}

LayerStepper::Slot& LayerStepper::old_slot(int32_t layer_idx) {
  return old_slots_[static_cast<size_t>(layer_idx) % old_slots_.size()];
}

LayerStepper::Slot& LayerStepper::new_slot(int32_t layer_idx) {
  return new_slots_[static_cast<size_t>(layer_idx) % new_slots_.size()];
}

void LayerStepper::post_read(int32_t layer_idx) {
  Slot& slot = old_slot(layer_idx);
  slot.post(*reader_, layer_idx, [this, &slot] {
    for (size_t i = 0; i < hosted_.size(); ++i) read_and_check_sources(slot, i);
  });
}

void LayerStepper::collect_read(int32_t layer_idx) {
  Slot& slot = old_slot(layer_idx);
  slot.wait(*reader_, layer_idx);
  problems_.append(slot.problems);
  counters_.bytes_read += slot.bytes;
  counters_.seconds_read += slot.seconds;
}

void LayerStepper::post_write(int32_t layer_idx) {
  Slot& slot = new_slot(layer_idx);
  slot.post(*writer_, layer_idx, [this, &slot] {
    // Every new row is hashed here, beside the write, while the main thread exchanges the
    // next layer.
    for (size_t i = 0; i < hosted_.size(); ++i) verify_new_rows(slot, i);
    if (!slot.problems.empty()) write_failed_ = true;
    for (size_t i = 0; i < hosted_.size() && !write_failed_; ++i) write_layer(slot, i);
  });
}

void LayerStepper::collect_writes(int32_t through_layer, bool block) {
  for (; next_write_to_collect_ <= through_layer; ++next_write_to_collect_) {
    Slot& slot = new_slot(next_write_to_collect_);
    if (!block && !slot.done(*writer_)) return;
    slot.wait(*writer_, next_write_to_collect_);
    problems_.append(slot.problems);
    counters_.bytes_written += slot.bytes;
    counters_.seconds_write += slot.seconds;
    if (slot.problems.empty()) core::fault::kill_point("layer-" + std::to_string(slot.layer));
  }
}

void LayerStepper::run_layer(int32_t layer_idx) {
  maybe_stall(session_.rank(), layer_idx);
  collect_read(layer_idx);
  // The new rows' buffer is free once the layer it held last is written.
  collect_writes(layer_idx - depth_.new_layers, /*block=*/true);
  collect_writes(layer_idx - 1, /*block=*/false);
  // Everyone's reads and source checks of this layer, and the writes finished so far, are
  // fine, or nobody sends.
  agree(session_.group(), problems_,
        fmt::format("layer {}: agreement before the exchange", layer_idx));
  Slot& old = old_slot(layer_idx);
  Slot& fresh = new_slot(layer_idx);
  at_layer(layer_idx, [&] { exchange(layer_idx, old, fresh); });
  // The old rows are used up: read a later layer into them.
  const int32_t ahead = layer_idx + depth_.old_layers;
  if (ahead < static_cast<int32_t>(plan_.layers.size())) post_read(ahead);
  post_write(layer_idx);
}

void LayerStepper::read_and_check_sources(Slot& slot, size_t i) {
  const Hosted& h = hosted_[i];
  if (!h.has_old || h.shard == nullptr) return;
  const int32_t layer_idx = slot.layer;
  LayerBuffer& old_rows = *slot.rows[i];
  const auto& shard = *h.shard;
  const bool read = capture(slot.problems, [&] {
    for (size_t t = 0; t < old_rows.num_tensors(); ++t) {
      shard.read_tensor(layer_idx, t, old_rows.tensor(t));
      old_rows.checksums[t] = shard.read_checksums(layer_idx, t);
      slot.bytes += static_cast<long long>(old_rows.tensor(t).size());
    }
  });
  if (!read) return;
  // Every old row is checked, used or not: a corrupted input is reported, never copied.
  const int32_t first_slot = h.ep_rank * old_rows.num_rows();
  for (int32_t row = 0; row < old_rows.num_rows(); ++row) {
    for (size_t t = 0; t < old_rows.num_tensors(); ++t) {
      uint64_t have = io::checksum({old_rows.row(t, row), old_rows.row_bytes(t)});
      const uint64_t recorded = old_rows.checksums[t][static_cast<size_t>(row)];
      if (have == recorded) continue;
      slot.problems.set_kind_if_worse(core::ErrorKind::kInput);
      slot.problems.add(
          fmt::format("'{}' layer {}, slot {} (logical expert {}), tensor '{}': checksum mismatch "
                      "(recorded {:016x}, computed {:016x})",
                      shard.path().string(), layer_idx, first_slot + row,
                      inputs_.old_placement.expert_at(layer_idx, h.ep_rank, row),
                      inputs_.tensors[t].name, recorded, have));
    }
  }
}

// The layer's new rows from its old rows, through the one exchange body.
void LayerStepper::exchange(int32_t layer_idx, Slot& old, Slot& fresh) {
  const auto start = Clock::now();
  const exchange::ExchangeRows rows{
      [&](int32_t, int32_t ep_rank, size_t t, int32_t row) {
        return old.rows[index_of(ep_rank)]->row(t, row);
      },
      [&](int32_t, int32_t ep_rank, size_t t, int32_t row) {
        return fresh.rows[index_of(ep_rank)]->row(t, row);
      },
      [&](int32_t, int32_t ep_rank, size_t t, int32_t row) {
        return old.rows[index_of(ep_rank)]->checksums[t][static_cast<size_t>(row)];
      },
      [&](int32_t, int32_t ep_rank, size_t t, int32_t row) -> uint64_t& {
        return fresh.rows[index_of(ep_rank)]->checksums[t][static_cast<size_t>(row)];
      }};
  exchange::HostCopier copier;
  const int32_t layers[] = {layer_idx};
  const exchange::ExchangeCounts counts = exchange_->run(layers, rows, copier);
  counters_.bytes_sent += counts.bytes_sent;
  counters_.bytes_received += counts.bytes_received;
  counters_.rows_copied_locally += counts.rows_copied_locally;
  counters_.seconds_exchange += seconds_since(start);
}

void LayerStepper::verify_new_rows(Slot& slot, size_t i) {
  const Hosted& h = hosted_[i];
  if (!h.has_new) return;
  const int32_t layer_idx = slot.layer;
  const LayerBuffer& new_rows = *slot.rows[i];
  const auto& rows =
      plan_.layers[static_cast<size_t>(layer_idx)].rows[static_cast<size_t>(h.ep_rank)];
  for (int32_t row = 0; row < new_rows.num_rows(); ++row) {
    check_new_row(new_rows, row, rows[static_cast<size_t>(row)], layer_idx, h.ep_rank,
                  inputs_.tensors, slot.problems);
  }
}

void LayerStepper::write_layer(Slot& slot, size_t i) {
  Hosted& h = hosted_[i];
  if (!h.has_new) return;
  const int32_t layer_idx = slot.layer;
  const LayerBuffer& new_rows = *slot.rows[i];
  const bool ok = capture(slot.problems, [&] {
    const auto& map = inputs_.new_placement.physical_to_logical_map[static_cast<size_t>(layer_idx)];
    std::span<const int32_t> ids(
        map.data() + static_cast<size_t>(h.ep_rank) * static_cast<size_t>(new_rows.num_rows()),
        static_cast<size_t>(new_rows.num_rows()));
    std::vector<std::span<const std::byte>> tensors;
    for (size_t t = 0; t < new_rows.num_tensors(); ++t) tensors.emplace_back(new_rows.tensor(t));
    h.writer->write_layer(layer_idx, ids, tensors, new_rows.checksums);
    // The rows written, not the buffer (whose tensors are padded to 4 KiB).
    for (const auto& rows : tensors) slot.bytes += static_cast<long long>(rows.size());
  });
  if (!ok) write_failed_ = true;
}

std::vector<WrittenShard> LayerStepper::finish() {
  collect_writes(static_cast<int32_t>(plan_.layers.size()) - 1, /*block=*/true);
  std::vector<WrittenShard> files;
  for (auto& h : hosted_) {
    if (!h.writer || !problems_.empty()) continue;
    const auto start = Clock::now();
    capture(problems_, [&] { h.writer->close(); });
    counters_.seconds_write += seconds_since(start);
    files.push_back({h.output_file, h.writer->file_xxh3()});
  }
  agree(session_.group(), problems_, "closing the output shards");
  core::fault::kill_point("written");
  return files;
}

void add_counters(job::RankFigures& figures, const StepCounters& local, RebalanceReport& report) {
  figures.sum(report.bytes_read, local.bytes_read);
  figures.sum(report.bytes_written, local.bytes_written);
  figures.sum(report.bytes_sent, local.bytes_sent);
  figures.sum(report.rows_copied_locally, local.rows_copied_locally);
  figures.max(report.busiest_rank_bytes, std::max(local.bytes_sent, local.bytes_received));
  figures.max_seconds(report.seconds_read, local.seconds_read);
  figures.max_seconds(report.seconds_exchange, local.seconds_exchange);
  figures.max_seconds(report.seconds_write, local.seconds_write);
  figures.max(report.peak_rss_bytes, core::peak_rss_bytes());
}

}  // namespace eplb::engine
