// The exchange body (exchange/layer_exchange.hpp) without a network: one process hosts every
// EP rank, so every message is local and the transport must see nothing; then the peer count
// every process derives from the plan.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/exchange/layer_exchange.hpp"
#include "eplb/exchange/wire_format.hpp"

namespace {

using eplb::placement::Placement;
using eplb::plan::ProcessMap;

// A transport for one process: any transfer is a bug of the exchange body.
class NoNetwork final : public eplb::transport::Transport {
 public:
  std::string_view name() const override { return "none"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  using Transport::exchange;
  void exchange(std::span<const eplb::transport::Transfer> sends,
                std::span<const eplb::transport::Transfer> recvs, int max_peers) override {
    ++calls;
    CHECK(sends.empty());
    CHECK(recvs.empty());
    CHECK(max_peers == 0);
  }
  eplb::transport::HostBuffer allocate_host(size_t bytes) override {
    return {new std::byte[bytes], bytes, [](std::byte* p) { delete[] p; }};
  }
  std::vector<long long> all_max(const std::vector<long long>& v, std::string_view) override {
    return v;
  }
  void close() override {}
  int calls = 0;
};

const std::vector<size_t> kRowBytes{16, 5};

uint8_t byte_of(int32_t layer, int32_t expert, size_t t, size_t i) {
  return static_cast<uint8_t>(expert * 31 + layer * 7 + static_cast<int32_t>(t) * 3 +
                              static_cast<int32_t>(i) + 1);
}

// [layer][EP rank][tensor] -> rows*row_bytes bytes holding `p`'s experts (0xEE where empty).
using Rows = std::vector<std::vector<std::vector<std::vector<uint8_t>>>>;
Rows rows_of(const Placement& p, uint8_t empty) {
  Rows out(static_cast<size_t>(p.num_layers()));
  for (int32_t l = 0; l < p.num_layers(); ++l) {
    for (int32_t r = 0; r < p.ep_size; ++r) {
      auto& tensors = out[static_cast<size_t>(l)].emplace_back();
      for (size_t t = 0; t < kRowBytes.size(); ++t) {
        auto& bytes =
            tensors.emplace_back(kRowBytes[t] * static_cast<size_t>(p.num_slots_per_rank));
        for (int32_t row = 0; row < p.num_slots_per_rank; ++row) {
          const int32_t e = p.expert_at(l, r, row);
          for (size_t i = 0; i < kRowBytes[t]; ++i) {
            bytes[static_cast<size_t>(row) * kRowBytes[t] + i] =
                e < 0 ? empty : byte_of(l, e, t, i);
          }
        }
      }
    }
  }
  return out;
}

Placement random_placement(std::mt19937& rng, int32_t ranks, int32_t rows, int32_t experts,
                           int32_t layers) {
  Placement p{ranks, rows, experts, {}, {}};
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<int32_t> ids;
    for (int32_t s = 0; s < ranks * rows; ++s) {
      ids.push_back(s < experts ? s : static_cast<int32_t>(rng() % static_cast<unsigned>(experts)));
    }
    if (ranks * rows > experts) ids.back() = -1;
    std::shuffle(ids.begin(), ids.end(), rng);
    p.physical_to_logical_map.push_back(ids);
  }
  return p;
}

}  // namespace

TEST_CASE("layer exchange: one process hosting every EP rank fills every new row locally") {
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    const int32_t ranks = 1 + static_cast<int32_t>(rng() % 4),
                  rows = 2 + static_cast<int32_t>(rng() % 3);
    const int32_t experts = std::max(1, ranks * rows - 1 - static_cast<int32_t>(rng() % 2));
    const Placement old_p = random_placement(rng, ranks, rows, experts, 3);
    Placement new_p = random_placement(rng, ranks, rows, experts, 3);
    const auto plan = eplb::plan::make_plan(old_p, new_p);
    const ProcessMap map{ranks, 1};
    Rows old_rows = rows_of(old_p, 0xEE);
    Rows new_rows = rows_of(new_p, 0x55);  // all of it must be overwritten
    for (auto& layer : new_rows)
      for (auto& rank : layer)
        for (auto& t : rank) std::fill(t.begin(), t.end(), uint8_t{0x55});
    NoNetwork none;
    eplb::exchange::LayerExchange body(plan, map, 0, kRowBytes, none);
    const eplb::exchange::ExchangeRows where{
        [&](int32_t l, int32_t ep, size_t t, int32_t row) {
          auto& v = old_rows[static_cast<size_t>(l)][static_cast<size_t>(ep)][t];
          return reinterpret_cast<std::byte*>(v.data()) + static_cast<size_t>(row) * kRowBytes[t];
        },
        [&](int32_t l, int32_t ep, size_t t, int32_t row) {
          auto& v = new_rows[static_cast<size_t>(l)][static_cast<size_t>(ep)][t];
          return reinterpret_cast<std::byte*>(v.data()) + static_cast<size_t>(row) * kRowBytes[t];
        },
        {},
        {}};
    eplb::exchange::HostCopier copier;
    const std::vector<int32_t> layers{0, 1, 2};
    const auto counts = body.run(layers, where, copier);
    CHECK(none.calls == 1);
    CHECK(counts.bytes_sent == 0);
    // Every new slot holds its expert's bytes; empty slots hold zeros.
    const Rows want = rows_of(new_p, 0x00);
    CHECK(new_rows == want);
  }
}

TEST_CASE("layer exchange: the peer count every process derives from the plan") {
  // EP ranks 0..3 on 4 processes; layer 0: 0 -> 1, 0 -> 2, 3 -> 1; layer 1: 2 -> 1.
  eplb::plan::Plan plan;
  plan.layers.resize(2);
  plan.layers[0].messages = {{0, 1, {5}, {0}, {0}}, {0, 2, {6}, {1}, {0}}, {3, 1, {7}, {0}, {1}}};
  plan.layers[1].messages = {{2, 1, {8}, {0}, {0}}};
  const std::vector<int32_t> first{0}, both{0, 1};
  CHECK(eplb::exchange::max_peer_processes(plan, first, ProcessMap{4, 4}) == 2);
  CHECK(eplb::exchange::max_peer_processes(plan, both, ProcessMap{4, 4}) == 3);  // 1 hears 0,2,3
  // Two EP ranks per process: 0,1 on process 0 and 2,3 on process 1; 0 -> 1 is local.
  CHECK(eplb::exchange::max_peer_processes(plan, both, ProcessMap{4, 2}) == 1);
  CHECK(eplb::exchange::max_peer_processes(plan, both, ProcessMap{4, 1}) == 0);
}
