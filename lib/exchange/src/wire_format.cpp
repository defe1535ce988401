#include "eplb/exchange/wire_format.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace eplb::exchange {

WireLayout wire_layout(const WireInput& in) {
  const size_t num_tensors = in.row_bytes.size();
  const int32_t me = in.process;
  std::map<int, transport::Transfer> sends, recvs;  // by peer: ascending on both sides
  WireLayout out;
  size_t trailer_at = 0;
  auto add_trailer = [&](transport::Transfer& transfer, const plan::Message& m,
                         std::vector<TrailerSlot>& slots) {
    if (in.trailers == nullptr) return;
    const size_t words = m.expert_ids.size() * num_tensors;
    slots.push_back({&m, trailer_at});
    transfer.segments.push_back(
        {reinterpret_cast<std::byte*>(in.trailers + trailer_at), words * sizeof(uint64_t)});
    trailer_at += words;
  };
  for (const auto& m : in.layer->messages) {
    const int32_t src = in.map->process_of(m.src_rank), dst = in.map->process_of(m.dst_rank);
    if (src == me && dst == me) {
      out.local.push_back(&m);
    } else if (src == me) {
      auto& transfer = sends.try_emplace(dst, transport::Transfer{dst, {}}).first->second;
      for (int32_t row : m.src_rows) {
        for (size_t t = 0; t < num_tensors; ++t) {
          transfer.segments.push_back({in.source_row(m.src_rank, t, row), in.row_bytes[t]});
        }
      }
      add_trailer(transfer, m, out.sent_trailers);
    } else if (dst == me) {
      auto& transfer = recvs.try_emplace(src, transport::Transfer{src, {}}).first->second;
      for (int32_t row : m.dst_rows) {
        for (size_t t = 0; t < num_tensors; ++t) {
          transfer.segments.push_back({in.dest_row(m.dst_rank, t, row), in.row_bytes[t]});
        }
      }
      add_trailer(transfer, m, out.received_trailers);
    }
  }
  for (auto& [peer, t] : sends) out.sends.push_back(std::move(t));
  for (auto& [peer, t] : recvs) out.recvs.push_back(std::move(t));
  return out;
}

int max_peer_processes(const plan::Plan& plan, std::span<const int32_t> layer_idxs,
                       const plan::ProcessMap& map) {
  std::vector<std::set<int32_t>> to(static_cast<size_t>(map.num_processes));
  std::vector<std::set<int32_t>> from(static_cast<size_t>(map.num_processes));
  for (int32_t l : layer_idxs) {
    for (const auto& m : plan.layers[static_cast<size_t>(l)].messages) {
      const int32_t src = map.process_of(m.src_rank), dst = map.process_of(m.dst_rank);
      if (src == dst) continue;
      to[static_cast<size_t>(src)].insert(dst);
      from[static_cast<size_t>(dst)].insert(src);
    }
  }
  size_t most = 0;
  for (size_t p = 0; p < to.size(); ++p) most = std::max({most, to[p].size(), from[p].size()});
  return static_cast<int>(most);
}

size_t trailer_words(const plan::LayerPlan& layer, const plan::ProcessMap& map, int32_t process,
                     size_t num_tensors) {
  size_t words = 0;
  for (const auto& m : layer.messages) {
    const int32_t src = map.process_of(m.src_rank), dst = map.process_of(m.dst_rank);
    if (src != dst && (src == process || dst == process)) {
      words += m.expert_ids.size() * num_tensors;
    }
  }
  return words;
}

}  // namespace eplb::exchange
