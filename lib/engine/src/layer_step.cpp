#include "eplb/engine/layer_step.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "eplb/core/clock.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/core/log.hpp"
#include "eplb/engine/agreement.hpp"
#include "eplb/engine/wire_format.hpp"

namespace eplb::engine {
namespace {

using core::Clock;
using core::seconds_since;

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

LayerStepper::LayerStepper(const runtime::MpiSession& session, Inputs& inputs,
                           const plan::Plan& plan, transport::Transport& transport,
                           const std::filesystem::path& staging, const std::string& checkpoint_id)
    : session_(session), inputs_(inputs), plan_(plan), transport_(transport) {
  const auto& tensors = inputs.tensors;
  hosted_.resize(inputs.my_ranks.size());
  core::ProblemList problems(core::ErrorKind::kIo);
  for (size_t i = 0; i < hosted_.size(); ++i) {
    Hosted& h = hosted_[i];
    h.ep_rank = inputs.my_ranks[i];
    if (inputs.shards[i]) h.shard = &*inputs.shards[i];
    if (h.ep_rank < plan.old_ep_size) {
      h.old_rows.emplace(transport, tensors, plan.old_num_slots_per_rank);
    }
    if (h.ep_rank >= plan.new_ep_size) continue;
    h.new_rows.emplace(transport, tensors, plan.new_num_slots_per_rank);
    h.output_file = staging / io::shard_file_name(h.ep_rank);
    capture(problems, [&] {
      h.writer.emplace(
          h.output_file,
          io::ShardInfo{h.ep_rank, plan.new_ep_size, static_cast<int32_t>(plan.layers.size()),
                        plan.new_num_slots_per_rank, tensors, checkpoint_id});
    });
  }
  size_t words = 0;  // checksum trailers of the busiest layer
  for (const auto& layer : plan.layers) {
    words =
        std::max(words, trailer_words(layer, inputs.process_map, session.rank(), tensors.size()));
  }
  trailers_ = transport.allocate_host(std::max<size_t>(8, words * sizeof(uint64_t)));
  for (const auto& spec : tensors) row_bytes_.push_back(spec.row_bytes());
  for (const auto& spec : tensors) {
    std::vector<std::byte> zeros(spec.row_bytes());
    zero_row_checksums_.push_back(io::checksum(zeros));
  }
  agree(session.group(), problems, "creating the output shards");
  core::fault::kill_point("shard-open");
}

LayerStepper::~LayerStepper() = default;

LayerStepper::Hosted* LayerStepper::hosted(int32_t ep_rank) {
  for (auto& h : hosted_) {
    if (h.ep_rank == ep_rank) return &h;
  }
  return nullptr;
}

void LayerStepper::run_layer(int32_t layer_idx) {
  const auto& layer = plan_.layers[layer_idx];
  maybe_stall(session_.rank(), layer_idx);
  for (auto& h : hosted_) read_and_check_sources(h, layer_idx);
  // Everyone's reads, source checks and previous writes are fine, or nobody sends.
  agree(session_.group(), problems_,
        fmt::format("layer {}: agreement before the exchange", layer_idx));
  try {
    exchange(layer);
  } catch (const core::Error& e) {
    // The transport names the peers; the phase is ours to add.
    if (e.reported()) throw;
    std::vector<std::string> located;
    for (const auto& p : e.problems()) located.push_back(fmt::format("layer {}: {}", layer_idx, p));
    throw core::Error(e.kind(), std::move(located));
  }
  for (auto& h : hosted_) {
    fill_local_rows(h, layer);
    verify_new_rows(h, layer_idx);
    write_layer(h, layer_idx);
  }
  core::fault::kill_point("layer-" + std::to_string(layer_idx));
}

void LayerStepper::read_and_check_sources(Hosted& h, int32_t layer_idx) {
  if (!h.old_rows || h.shard == nullptr) return;
  LayerBuffer& old_rows = *h.old_rows;
  const auto start = Clock::now();
  const auto& shard = *h.shard;
  const bool read = capture(problems_, [&] {
    for (size_t t = 0; t < old_rows.num_tensors(); ++t) {
      shard.read_tensor(layer_idx, t, old_rows.tensor(t));
      old_rows.checksums[t] = shard.read_checksums(layer_idx, t);
      counters_.bytes_read += static_cast<long long>(old_rows.tensor(t).size());
    }
  });
  counters_.seconds_read += seconds_since(start);
  if (!read) return;
  // Every old row is checked, used or not: a corrupted input is reported, never copied.
  const int32_t first_slot = h.ep_rank * old_rows.num_rows();
  for (int32_t row = 0; row < old_rows.num_rows(); ++row) {
    for (size_t t = 0; t < old_rows.num_tensors(); ++t) {
      uint64_t have = io::checksum({old_rows.row(t, row), old_rows.row_bytes(t)});
      if (have == old_rows.checksums[t][row]) continue;
      problems_.set_kind_if_worse(core::ErrorKind::kInput);
      problems_.add(
          fmt::format("'{}' layer {}, slot {} (logical expert {}), tensor '{}': checksum mismatch "
                      "(recorded {:016x}, computed {:016x})",
                      shard.path().string(), layer_idx, first_slot + row,
                      inputs_.old_placement.expert_at(layer_idx, h.ep_rank, row),
                      inputs_.tensors[t].name, old_rows.checksums[t][row], have));
    }
  }
}

// A message between two EP ranks of this process: rows copied, checksums carried along.
void LayerStepper::copy_local_message(const plan::Message& m) {
  LayerBuffer& from = *hosted(m.src_rank)->old_rows;
  LayerBuffer& to = *hosted(m.dst_rank)->new_rows;
  for (size_t k = 0; k < m.expert_ids.size(); ++k) {
    for (size_t t = 0; t < inputs_.tensors.size(); ++t) {
      std::memcpy(to.row(t, m.dst_rows[k]), from.row(t, m.src_rows[k]), from.row_bytes(t));
      to.checksums[t][m.dst_rows[k]] = from.checksums[t][m.src_rows[k]];
    }
  }
}

void LayerStepper::exchange(const plan::LayerPlan& layer) {
  const auto start = Clock::now();
  auto* trailers = reinterpret_cast<uint64_t*>(trailers_.data());
  const WireLayout wire =
      wire_layout(WireInput{&layer, &inputs_.process_map, session_.rank(), row_bytes_,
                            [this](int32_t ep_rank, size_t t, int32_t row) {
                              return hosted(ep_rank)->old_rows->row(t, row);
                            },
                            [this](int32_t ep_rank, size_t t, int32_t row) {
                              return hosted(ep_rank)->new_rows->row(t, row);
                            },
                            trailers});
  for (const auto* m : wire.local) copy_local_message(*m);
  // Each sent message carries the recorded checksums of its source slots.
  for (const auto& slot : wire.sent_trailers) {
    const plan::Message& m = *slot.message;
    const LayerBuffer& rows = *hosted(m.src_rank)->old_rows;
    uint64_t* sum = trailers + slot.offset;
    for (int32_t row : m.src_rows) {
      for (size_t t = 0; t < row_bytes_.size(); ++t) *sum++ = rows.checksums[t][row];
    }
  }
  for (const auto& t : wire.sends) counters_.bytes_sent += static_cast<long long>(t.bytes());
  for (const auto& t : wire.recvs) counters_.bytes_received += static_cast<long long>(t.bytes());
  transport_.exchange(wire.sends, wire.recvs);
  // The checksums that came with the bytes become the expected checksums of those rows.
  for (const auto& slot : wire.received_trailers) {
    const plan::Message& m = *slot.message;
    LayerBuffer& rows = *hosted(m.dst_rank)->new_rows;
    const uint64_t* sum = trailers + slot.offset;
    for (int32_t row : m.dst_rows) {
      for (size_t t = 0; t < row_bytes_.size(); ++t) rows.checksums[t][row] = *sum++;
    }
  }
  counters_.seconds_exchange += seconds_since(start);
}

void LayerStepper::fill_local_rows(Hosted& h, const plan::LayerPlan& layer) {
  if (!h.new_rows) return;
  LayerBuffer& new_rows = *h.new_rows;
  const auto& rows = layer.rows[h.ep_rank];
  for (int32_t row = 0; row < new_rows.num_rows(); ++row) {
    const auto& rp = rows[row];
    for (size_t t = 0; t < new_rows.num_tensors(); ++t) {
      const size_t bytes = new_rows.row_bytes(t);
      switch (rp.source) {
        case plan::RowSource::kUnchanged:
        case plan::RowSource::kLocal:
          std::memcpy(new_rows.row(t, row), h.old_rows->row(t, rp.src_row), bytes);
          new_rows.checksums[t][row] = h.old_rows->checksums[t][rp.src_row];
          break;
        case plan::RowSource::kCopy:
          // NOTE: the planner makes src_row a kReceived row, so it is filled already.
          std::memcpy(new_rows.row(t, row), new_rows.row(t, rp.src_row), bytes);
          new_rows.checksums[t][row] = new_rows.checksums[t][rp.src_row];
          break;
        case plan::RowSource::kEmpty:
          std::memset(new_rows.row(t, row), 0, bytes);
          new_rows.checksums[t][row] = zero_row_checksums_[t];
          break;
        case plan::RowSource::kReceived:
          break;
      }
    }
    if (rp.source == plan::RowSource::kLocal || rp.source == plan::RowSource::kCopy) {
      ++counters_.rows_copied_locally;
    }
  }
}

void LayerStepper::verify_new_rows(Hosted& h, int32_t layer_idx) {
  if (!h.new_rows) return;
  LayerBuffer& new_rows = *h.new_rows;
  const auto& rows = plan_.layers[layer_idx].rows[h.ep_rank];
  for (int32_t row = 0; row < new_rows.num_rows(); ++row) {
    for (size_t t = 0; t < new_rows.num_tensors(); ++t) {
      uint64_t have = io::checksum({new_rows.row(t, row), new_rows.row_bytes(t)});
      if (have == new_rows.checksums[t][row]) continue;
      problems_.set_kind_if_worse(core::ErrorKind::kComm);
      problems_.add(fmt::format(
          "layer {}, slot {} (logical expert {}), tensor '{}': bytes do not match the "
          "checksum of their source slot (expected {:016x}, got {:016x}; source: {})",
          layer_idx, h.ep_rank * new_rows.num_rows() + row, rows[row].expert_id,
          inputs_.tensors[t].name, new_rows.checksums[t][row], have,
          rows[row].peer >= 0 ? fmt::format("EP rank {}", rows[row].peer) : "local copy"));
    }
  }
}

void LayerStepper::write_layer(Hosted& h, int32_t layer_idx) {
  if (!h.new_rows || !problems_.empty()) return;
  LayerBuffer& new_rows = *h.new_rows;
  const auto start = Clock::now();
  capture(problems_, [&] {
    const auto& map = inputs_.new_placement.physical_to_logical_map[layer_idx];
    std::span<const int32_t> ids(map.data() + static_cast<size_t>(h.ep_rank) * new_rows.num_rows(),
                                 new_rows.num_rows());
    std::vector<std::span<const std::byte>> tensors;
    for (size_t t = 0; t < new_rows.num_tensors(); ++t) tensors.emplace_back(new_rows.tensor(t));
    h.writer->write_layer(layer_idx, ids, tensors, new_rows.checksums);
    counters_.bytes_written += static_cast<long long>(new_rows.bytes());
  });
  counters_.seconds_write += seconds_since(start);
}

std::vector<std::filesystem::path> LayerStepper::finish() {
  std::vector<std::filesystem::path> files;
  for (auto& h : hosted_) {
    if (!h.writer || !problems_.empty()) continue;
    const auto start = Clock::now();
    capture(problems_, [&] { h.writer->close(); });
    counters_.seconds_write += seconds_since(start);
    files.push_back(h.output_file);
  }
  agree(session_.group(), problems_, "closing the output shards");
  core::fault::kill_point("written");
  return files;
}

}  // namespace eplb::engine
