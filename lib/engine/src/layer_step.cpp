#include "eplb/engine/layer_step.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "eplb/core/log.hpp"
#include "eplb/engine/agreement.hpp"

namespace eplb::engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Entries this rank sends plus receives in one layer: sizes the checksum trailers.
size_t max_trailer_entries(const plan::Plan& plan, int32_t rank) {
  size_t most = 0;
  for (const auto& layer : plan.layers) {
    size_t entries = 0;
    for (const auto& m : layer.messages) {
      if (m.src_rank == rank || m.dst_rank == rank) entries += m.expert_ids.size();
    }
    most = std::max(most, entries);
  }
  return most;
}

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
                           const std::filesystem::path& staging)
    : session_(session),
      inputs_(inputs),
      plan_(plan),
      transport_(transport),
      rank_(session.rank()) {
  const auto& tensors = inputs.tensors;
  if (rank_ < plan.old_ep_size) old_.emplace(transport, tensors, plan.old_num_slots_per_rank);
  if (rank_ < plan.new_ep_size) new_.emplace(transport, tensors, plan.new_num_slots_per_rank);
  trailers_ = transport.allocate_host(
      std::max<size_t>(8, max_trailer_entries(plan, rank_) * tensors.size() * sizeof(uint64_t)));
  for (const auto& spec : tensors) {
    std::vector<std::byte> zeros(spec.row_bytes());
    zero_row_checksums_.push_back(io::checksum(zeros));
  }
  core::ProblemList problems(core::ErrorKind::kIo);
  if (new_) {
    output_file_ = staging / io::shard_file_name(rank_);
    capture(problems, [&] {
      writer_.emplace(output_file_, io::ShardInfo{rank_, plan.new_ep_size,
                                                  static_cast<int32_t>(plan.layers.size()),
                                                  plan.new_num_slots_per_rank, tensors});
    });
  }
  agree(session.comm(), problems);
}

LayerStepper::~LayerStepper() = default;

void LayerStepper::run_layer(int32_t layer_idx) {
  const auto& layer = plan_.layers[layer_idx];
  maybe_stall(rank_, layer_idx);
  read_and_check_sources(layer_idx);
  // Everyone's reads, source checks and previous writes are fine, or nobody sends.
  agree(session_.comm(), problems_);
  exchange(layer);
  fill_local_rows(layer);
  verify_new_rows(layer_idx);
  write_layer(layer_idx);
}

void LayerStepper::read_and_check_sources(int32_t layer_idx) {
  if (!old_) return;
  const auto start = Clock::now();
  const auto& shard = *inputs_.shard;
  capture(problems_, [&] {
    for (size_t t = 0; t < old_->num_tensors(); ++t) {
      shard.read_tensor(layer_idx, t, old_->tensor(t));
      old_->checksums[t] = shard.read_checksums(layer_idx, t);
      counters_.bytes_read += static_cast<long long>(old_->tensor(t).size());
    }
  });
  counters_.seconds_read += seconds_since(start);
  if (!problems_.empty()) return;
  // Every old row is checked, used or not: a corrupted input is reported, never copied.
  const int32_t first_slot = rank_ * old_->num_rows();
  for (int32_t row = 0; row < old_->num_rows(); ++row) {
    for (size_t t = 0; t < old_->num_tensors(); ++t) {
      uint64_t have = io::checksum({old_->row(t, row), old_->row_bytes(t)});
      if (have != old_->checksums[t][row]) {
        problems_.set_kind_if_worse(core::ErrorKind::kInput);
        problems_.add(fmt::format(
            "'{}' layer {}, slot {} (logical expert {}), tensor '{}': checksum mismatch "
            "(recorded {:016x}, computed {:016x})",
            shard.path().string(), layer_idx, first_slot + row,
            inputs_.old_placement.expert_at(layer_idx, rank_, row), inputs_.tensors[t].name,
            old_->checksums[t][row], have));
      }
    }
  }
}

void LayerStepper::exchange(const plan::LayerPlan& layer) {
  const auto start = Clock::now();
  const size_t num_tensors = inputs_.tensors.size();
  auto* trailer = reinterpret_cast<uint64_t*>(trailers_.data());
  std::vector<transport::Transfer> sends, recvs;
  for (const auto* m : plan::messages_from(layer, rank_)) {
    transport::Transfer transfer{m->dst_rank, {}};
    uint64_t* sums = trailer;
    for (size_t k = 0; k < m->expert_ids.size(); ++k) {
      for (size_t t = 0; t < num_tensors; ++t) {
        transfer.segments.push_back({old_->row(t, m->src_rows[k]), old_->row_bytes(t)});
        *trailer++ = old_->checksums[t][m->src_rows[k]];
      }
    }
    transfer.segments.push_back({reinterpret_cast<std::byte*>(sums),
                                 static_cast<size_t>(trailer - sums) * sizeof(uint64_t)});
    counters_.bytes_sent += static_cast<long long>(transfer.bytes());
    sends.push_back(std::move(transfer));
  }
  std::vector<uint64_t*> recv_sums;
  for (const auto* m : plan::messages_to(layer, rank_)) {
    transport::Transfer transfer{m->src_rank, {}};
    for (size_t k = 0; k < m->expert_ids.size(); ++k) {
      for (size_t t = 0; t < num_tensors; ++t) {
        transfer.segments.push_back({new_->row(t, m->dst_rows[k]), new_->row_bytes(t)});
      }
    }
    recv_sums.push_back(trailer);
    transfer.segments.push_back({reinterpret_cast<std::byte*>(trailer),
                                 m->expert_ids.size() * num_tensors * sizeof(uint64_t)});
    trailer += m->expert_ids.size() * num_tensors;
    counters_.bytes_received += static_cast<long long>(transfer.bytes());
    recvs.push_back(std::move(transfer));
  }
  transport_.exchange(sends, recvs);
  // The checksums that came with the bytes become the expected checksums of those rows.
  size_t r = 0;
  for (const auto* m : plan::messages_to(layer, rank_)) {
    const uint64_t* sums = recv_sums[r++];
    for (size_t k = 0; k < m->expert_ids.size(); ++k) {
      for (size_t t = 0; t < num_tensors; ++t) new_->checksums[t][m->dst_rows[k]] = *sums++;
    }
  }
  counters_.seconds_exchange += seconds_since(start);
}

void LayerStepper::fill_local_rows(const plan::LayerPlan& layer) {
  if (!new_) return;
  const auto& rows = layer.rows[rank_];
  for (int32_t row = 0; row < new_->num_rows(); ++row) {
    const auto& rp = rows[row];
    for (size_t t = 0; t < new_->num_tensors(); ++t) {
      const size_t bytes = new_->row_bytes(t);
      switch (rp.source) {
        case plan::RowSource::kUnchanged:
        case plan::RowSource::kLocal:
          std::memcpy(new_->row(t, row), old_->row(t, rp.src_row), bytes);
          new_->checksums[t][row] = old_->checksums[t][rp.src_row];
          break;
        case plan::RowSource::kCopy:
          // NOTE: the planner makes src_row a kReceived row, so it is filled already.
          std::memcpy(new_->row(t, row), new_->row(t, rp.src_row), bytes);
          new_->checksums[t][row] = new_->checksums[t][rp.src_row];
          break;
        case plan::RowSource::kEmpty:
          std::memset(new_->row(t, row), 0, bytes);
          new_->checksums[t][row] = zero_row_checksums_[t];
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

void LayerStepper::verify_new_rows(int32_t layer_idx) {
  if (!new_) return;
  const auto& rows = plan_.layers[layer_idx].rows[rank_];
  for (int32_t row = 0; row < new_->num_rows(); ++row) {
    for (size_t t = 0; t < new_->num_tensors(); ++t) {
      uint64_t have = io::checksum({new_->row(t, row), new_->row_bytes(t)});
      if (have == new_->checksums[t][row]) continue;
      problems_.set_kind_if_worse(core::ErrorKind::kComm);
      problems_.add(
          fmt::format("layer {}, slot {} (logical expert {}), tensor '{}': bytes do not match the "
                      "checksum of their source slot (expected {:016x}, got {:016x}; source: {})",
                      layer_idx, rank_ * new_->num_rows() + row, rows[row].expert_id,
                      inputs_.tensors[t].name, new_->checksums[t][row], have,
                      rows[row].peer >= 0 ? fmt::format("rank {}", rows[row].peer) : "local copy"));
    }
  }
}

void LayerStepper::write_layer(int32_t layer_idx) {
  if (!new_ || !problems_.empty()) return;
  const auto start = Clock::now();
  capture(problems_, [&] {
    const auto& map = inputs_.new_placement.physical_to_logical_map[layer_idx];
    std::span<const int32_t> ids(map.data() + static_cast<size_t>(rank_) * new_->num_rows(),
                                 new_->num_rows());
    std::vector<std::span<const std::byte>> tensors;
    for (size_t t = 0; t < new_->num_tensors(); ++t) tensors.emplace_back(new_->tensor(t));
    writer_->write_layer(layer_idx, ids, tensors, new_->checksums);
    counters_.bytes_written += static_cast<long long>(new_->bytes());
  });
  counters_.seconds_write += seconds_since(start);
}

std::vector<std::filesystem::path> LayerStepper::finish() {
  std::vector<std::filesystem::path> files;
  if (writer_ && problems_.empty()) {
    const auto start = Clock::now();
    capture(problems_, [&] { writer_->close(); });
    counters_.seconds_write += seconds_since(start);
    files.push_back(output_file_);
  }
  agree(session_.comm(), problems_);
  return files;
}

}  // namespace eplb::engine
