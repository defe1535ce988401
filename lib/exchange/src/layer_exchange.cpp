#include "eplb/exchange/layer_exchange.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "eplb/core/error.hpp"
#include "eplb/exchange/wire_format.hpp"

namespace eplb::exchange {

void HostCopier::copy(std::byte* dst, const std::byte* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

void HostCopier::zero(std::byte* dst, size_t bytes) { std::memset(dst, 0, bytes); }

ExchangeCounts& ExchangeCounts::operator+=(const ExchangeCounts& o) {
  bytes_sent += o.bytes_sent;
  bytes_received += o.bytes_received;
  rows_copied_locally += o.rows_copied_locally;
  rows_rewritten += o.rows_rewritten;
  return *this;
}

LayerExchange::LayerExchange(const plan::Plan& plan, const plan::ProcessMap& map, int32_t process,
                             std::vector<size_t> row_bytes, transport::Transport& transport,
                             ExchangeOptions options)
    : plan_(plan),
      map_(map),
      process_(process),
      row_bytes_(std::move(row_bytes)),
      transport_(transport),
      options_(std::move(options)),
      hosted_(map.ep_ranks_of(process)) {}

namespace {

// A peer's transfer of a group of layers: each layer's transfer to it, back to back.
void append_by_peer(const std::vector<transport::Transfer>& from,
                    std::map<int, transport::Transfer>& into) {
  for (const auto& t : from) {
    auto& all = into.try_emplace(t.peer, transport::Transfer{t.peer, {}}).first->second;
    all.segments.insert(all.segments.end(), t.segments.begin(), t.segments.end());
  }
}

}  // namespace

size_t LayerExchange::reserve_trailers() {
  size_t words = 1;
  for (const auto& layer : plan_.layers) {
    words = std::max(words, trailer_words(layer, map_, process_, row_bytes_.size()));
  }
  if (words * sizeof(uint64_t) > trailers_.size()) {
    trailers_ = transport_.allocate_host(words * sizeof(uint64_t));
  }
  return trailers_.size();
}

// Rows of one layer that this process fills itself: before the transfers (after_receive
// false) those whose sources are old rows, and empty rows; after them the copies of
// received rows.
void LayerExchange::fill_rows(int32_t layer_idx, bool after_receive, const ExchangeRows& rows,
                              Copier& copier, ExchangeCounts& counts) const {
  const auto& layer = plan_.layers[static_cast<size_t>(layer_idx)];
  const bool sums = static_cast<bool>(rows.old_sum);
  for (int32_t ep_rank : hosted_) {
    if (ep_rank >= plan_.new_ep_size) continue;
    const auto& plan_rows = layer.rows[static_cast<size_t>(ep_rank)];
    for (int32_t row = 0; row < static_cast<int32_t>(plan_rows.size()); ++row) {
      const plan::RowPlan& rp = plan_rows[static_cast<size_t>(row)];
      if ((rp.source == plan::RowSource::kCopy) != after_receive) continue;
      if (rp.source == plan::RowSource::kReceived) {
        ++counts.rows_rewritten;
        continue;
      }
      const bool keep =
          rp.source == plan::RowSource::kUnchanged && options_.unchanged == Unchanged::kKeep;
      for (size_t t = 0; t < row_bytes_.size(); ++t) {
        uint64_t sum = 0;
        switch (rp.source) {
          case plan::RowSource::kUnchanged:
          case plan::RowSource::kLocal:
            if (!keep) {
              copier.copy(rows.new_row(layer_idx, ep_rank, t, row),
                          rows.old_row(layer_idx, ep_rank, t, rp.src_row), row_bytes_[t]);
            }
            if (sums) sum = rows.old_sum(layer_idx, ep_rank, t, rp.src_row);
            break;
          case plan::RowSource::kCopy:
            // NOTE: the planner makes src_row a kReceived row, filled by the transfers
            // (bytes and expected checksum).
            copier.copy(rows.new_row(layer_idx, ep_rank, t, row),
                        rows.new_row(layer_idx, ep_rank, t, rp.src_row), row_bytes_[t]);
            if (sums) sum = rows.new_sum(layer_idx, ep_rank, t, rp.src_row);
            break;
          case plan::RowSource::kEmpty:
            copier.zero(rows.new_row(layer_idx, ep_rank, t, row), row_bytes_[t]);
            if (sums) sum = options_.zero_row_sums.at(t);
            break;
          case plan::RowSource::kReceived:
            break;
        }
        if (sums) rows.new_sum(layer_idx, ep_rank, t, row) = sum;
      }
      if (rp.source == plan::RowSource::kLocal || rp.source == plan::RowSource::kCopy) {
        ++counts.rows_copied_locally;
      }
      if (rp.source != plan::RowSource::kUnchanged) ++counts.rows_rewritten;
    }
  }
}

ExchangeCounts LayerExchange::run(std::span<const int32_t> layer_idxs, const ExchangeRows& rows,
                                  Copier& copier) {
  ExchangeCounts counts;
  const bool sums = static_cast<bool>(rows.old_sum);
  EPLB_ASSERT(sums == static_cast<bool>(rows.new_sum));
  if (sums) {
    size_t words = 0;
    for (int32_t l : layer_idxs) {
      words +=
          trailer_words(plan_.layers[static_cast<size_t>(l)], map_, process_, row_bytes_.size());
    }
    if (words * sizeof(uint64_t) > trailers_.size()) {
      trailers_ = transport_.allocate_host(words * sizeof(uint64_t));
    }
  }
  auto* trailers = reinterpret_cast<uint64_t*>(trailers_.data());
  std::map<int, transport::Transfer> sends, recvs;  // by peer process, ascending
  std::vector<std::pair<int32_t, TrailerSlot>> sent_sums, received_sums;
  size_t trailer_at = 0;
  for (int32_t layer_idx : layer_idxs) {
    const auto& layer = plan_.layers[static_cast<size_t>(layer_idx)];
    const WireLayout wire = wire_layout(WireInput{
        &layer, &map_, process_, row_bytes_,
        [&](int32_t ep, size_t t, int32_t row) { return rows.old_row(layer_idx, ep, t, row); },
        [&](int32_t ep, size_t t, int32_t row) { return rows.new_row(layer_idx, ep, t, row); },
        sums ? trailers + trailer_at : nullptr});
    // NOTE: a peer's transfer of a group is its layers' transfers back to back, in layer
    // order, on both sides.
    append_by_peer(wire.sends, sends);
    append_by_peer(wire.recvs, recvs);
    for (const auto& slot : wire.sent_trailers) {
      sent_sums.emplace_back(layer_idx, TrailerSlot{slot.message, trailer_at + slot.offset});
    }
    for (const auto& slot : wire.received_trailers) {
      received_sums.emplace_back(layer_idx, TrailerSlot{slot.message, trailer_at + slot.offset});
    }
    if (sums) {
      trailer_at += trailer_words(layer, map_, process_, row_bytes_.size());
    }
    // Messages between two EP ranks of this process: copied, checksums carried along.
    for (const plan::Message* m : wire.local) {
      for (size_t k = 0; k < m->expert_ids.size(); ++k) {
        for (size_t t = 0; t < row_bytes_.size(); ++t) {
          copier.copy(rows.new_row(layer_idx, m->dst_rank, t, m->dst_rows[k]),
                      rows.old_row(layer_idx, m->src_rank, t, m->src_rows[k]), row_bytes_[t]);
          if (sums) {
            rows.new_sum(layer_idx, m->dst_rank, t, m->dst_rows[k]) =
                rows.old_sum(layer_idx, m->src_rank, t, m->src_rows[k]);
          }
        }
      }
    }
    fill_rows(layer_idx, /*after_receive=*/false, rows, copier, counts);
  }
  // Each sent message carries the recorded checksums of its source slots.
  for (const auto& [layer_idx, slot] : sent_sums) {
    uint64_t* sum = trailers + slot.offset;
    for (int32_t row : slot.message->src_rows) {
      for (size_t t = 0; t < row_bytes_.size(); ++t) {
        *sum++ = rows.old_sum(layer_idx, slot.message->src_rank, t, row);
      }
    }
  }
  std::vector<transport::Transfer> send_list, recv_list;
  for (auto& [peer, t] : sends) {
    counts.bytes_sent += static_cast<long long>(t.bytes());
    send_list.push_back(std::move(t));
  }
  for (auto& [peer, t] : recvs) {
    counts.bytes_received += static_cast<long long>(t.bytes());
    recv_list.push_back(std::move(t));
  }
  copier.issue();  // local copies run next to the transfers
  // NOTE: every process derives the same peer count from the plan: no agreement needed.
  transport_.exchange(send_list, recv_list, max_peer_processes(plan_, layer_idxs, map_));
  // The checksums that came with the bytes become the expected checksums of those rows.
  for (const auto& [layer_idx, slot] : received_sums) {
    const uint64_t* sum = trailers + slot.offset;
    for (int32_t row : slot.message->dst_rows) {
      for (size_t t = 0; t < row_bytes_.size(); ++t) {
        rows.new_sum(layer_idx, slot.message->dst_rank, t, row) = *sum++;
      }
    }
  }
  for (int32_t layer_idx : layer_idxs) {
    fill_rows(layer_idx, /*after_receive=*/true, rows, copier, counts);
  }
  copier.issue();
  copier.finish();
  return counts;
}

}  // namespace eplb::exchange
