#include "rearranger.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "eplb/core/clock.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/mix.hpp"
#include "eplb/core/row_hash.hpp"

namespace eplb::capi {
namespace {

using core::Error;
using core::ErrorKind;

// Host rows: staging from the transport (pinned for NCCL), copies with memcpy.
class HostMemory final : public RowMemory {
 public:
  explicit HostMemory(transport::Transport& transport) : transport_(transport) {}
  std::byte* allocate_staging(size_t bytes) override {
    buffers_.push_back(transport_.allocate_host(bytes));
    return buffers_.back().data();
  }
  void make_current() override {}
  void before_exchange(void*) override {}
  exchange::Copier& copier() override { return copier_; }
  void place(const std::vector<RowCopy>& copies, void*, bool) override {
    for (const auto& c : copies) std::memcpy(c.dst, c.src, c.bytes);
  }
  void flip_byte(std::byte* p) override { *p ^= std::byte{1}; }
  std::vector<uint64_t> hash(const std::vector<ConstRow>& rows) override {
    std::vector<uint64_t> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(core::row_hash(r.data, r.bytes));
    return out;
  }
  bool device() const override { return false; }

 private:
  transport::Transport& transport_;
  exchange::HostCopier copier_;
  std::vector<transport::HostBuffer> buffers_;
};

// A 62-bit fingerprint, so that it and its negation both fit a long long.
long long fingerprint(uint64_t h) { return static_cast<long long>(h >> 2); }

uint64_t mix(uint64_t h, uint64_t v) { return core::splitmix64(h ^ v); }

// The plan's content, as every rank computed it from its maps.
uint64_t plan_hash(const plan::Plan& plan) {
  uint64_t h =
      mix(mix(static_cast<uint64_t>(plan.old_ep_size), static_cast<uint64_t>(plan.new_ep_size)),
          static_cast<uint64_t>(plan.old_num_slots_per_rank) << 32 |
              static_cast<uint64_t>(plan.new_num_slots_per_rank));
  for (const auto& layer : plan.layers) {
    for (const auto& rows : layer.rows) {
      for (const auto& rp : rows) {
        h = mix(h, static_cast<uint64_t>(rp.source) << 56 ^
                       static_cast<uint64_t>(static_cast<uint32_t>(rp.expert_id)) << 24 ^
                       static_cast<uint64_t>(static_cast<uint32_t>(rp.src_row + 1)) << 12 ^
                       static_cast<uint64_t>(static_cast<uint32_t>(rp.peer + 1)));
      }
    }
  }
  return h;
}

// Rows of `ep_rank` that change in `layer`: all but the unchanged ones.
int32_t changed_rows(const plan::LayerPlan& layer, int32_t ep_rank, int32_t new_ep_size) {
  if (ep_rank >= new_ep_size) return 0;
  const auto& rows = layer.rows[static_cast<size_t>(ep_rank)];
  return static_cast<int32_t>(std::count_if(rows.begin(), rows.end(), [](const auto& rp) {
    return rp.source != plan::RowSource::kUnchanged;
  }));
}

// Fault injection for the tests (docs/LIBRARY.md): EPLB_FAULT_CORRUPT_ROW=RANK flips one
// byte of that rank's first landed row after the exchange, as a corrupting link would.
bool corrupt_injected(int32_t rank) {
  const char* spec = std::getenv("EPLB_FAULT_CORRUPT_ROW");
  return spec != nullptr && *spec != '\0' && std::atoi(spec) == rank;
}

}  // namespace

std::unique_ptr<RowMemory> make_host_memory(transport::Transport& transport) {
  return std::make_unique<HostMemory>(transport);
}

Rearranger::Rearranger(transport::Transport& transport, const plan::Plan& plan,
                       std::vector<std::vector<TensorRows>> layers, const RearrangeOptions& options)
    : transport_(transport),
      plan_(plan),
      layers_(std::move(layers)),
      options_(options),
      rank_(transport.rank()),
      map_{plan.num_ep_ranks(), transport.size()} {
  check_and_agree();
  const int32_t num_layers = static_cast<int32_t>(plan_.layers.size());
  for (const auto& t : layers_[0]) row_bytes_.push_back(static_cast<size_t>(t.row_bytes));
  for (size_t b : row_bytes_) expert_bytes_ += b;
  // This rank's staging slots; the layer groups from every rank's needs (the same groups
  // everywhere: an exchange is collective).
  slot_of_.resize(static_cast<size_t>(num_layers));
  changed_.resize(static_cast<size_t>(num_layers));
  std::vector<size_t> busiest(static_cast<size_t>(num_layers), 0);  // max over ranks, bytes
  for (int32_t l = 0; l < num_layers; ++l) {
    const auto& layer = plan_.layers[static_cast<size_t>(l)];
    auto& slots = slot_of_[static_cast<size_t>(l)];
    slots.assign(static_cast<size_t>(num_rows_), -1);
    int32_t next = 0;
    if (rank_ < plan_.new_ep_size) {
      const auto& rows = layer.rows[static_cast<size_t>(rank_)];
      for (int32_t r = 0; r < num_rows_; ++r) {
        if (rows[static_cast<size_t>(r)].source != plan::RowSource::kUnchanged) {
          slots[static_cast<size_t>(r)] = next++;
        }
      }
    }
    changed_[static_cast<size_t>(l)] = next;
    for (int32_t ep = 0; ep < plan_.num_ep_ranks(); ++ep) {
      busiest[static_cast<size_t>(l)] =
          std::max(busiest[static_cast<size_t>(l)],
                   static_cast<size_t>(changed_rows(layer, ep, plan_.new_ep_size)) * expert_bytes_);
    }
  }
  const size_t one_layer =
      std::max<size_t>(expert_bytes_, *std::max_element(busiest.begin(), busiest.end()));
  const size_t budget = std::max(options_.staging_bytes, one_layer);
  size_t group_bytes = 0, mine = 0, most = expert_bytes_;
  for (int32_t l = 0; l < num_layers; ++l) {
    const size_t need = busiest[static_cast<size_t>(l)];
    const size_t my_need = static_cast<size_t>(changed_[static_cast<size_t>(l)]) * expert_bytes_;
    if (groups_.empty() || group_bytes + need > budget) {
      groups_.emplace_back();
      group_bytes = 0;
      mine = 0;
    }
    groups_.back().push_back(l);
    group_bytes += need;
    mine += my_need;
    most = std::max(most, mine);
  }
  const int device = layers_.empty() || layers_[0].empty() ? -1 : device_of(layers_[0][0].data);
  memory_ =
      device >= 0 ? make_device_memory(device, options_.timeout) : make_host_memory(transport_);
  staging_bytes_ = most;
  staging_ = memory_->allocate_staging(staging_bytes_);
  std::vector<uint64_t> zero_sums;  // what an empty row's checksum is
  for (size_t b : row_bytes_) {
    const std::vector<std::byte> zeros(b);
    zero_sums.push_back(core::row_hash(zeros.data(), b));
  }
  exchange_.emplace(plan_, map_, rank_, row_bytes_, transport_,
                    exchange::ExchangeOptions{exchange::Unchanged::kKeep, zero_sums});
}

Rearranger::~Rearranger() {
  if (pending_.valid()) {
    // The transport bounds the exchange by the timeout; the future's destructor waits.
    pending_.wait_for(options_.timeout + std::chrono::seconds(10));
  }
}

// Every rank checks its own tensors, then all agree: on who found a problem, and (when
// nobody did) on a fingerprint of the plan and of the tensors' layout.
void Rearranger::check_and_agree() {
  core::ProblemList problems(ErrorKind::kInput);
  const int32_t size = transport_.size();
  if (size != plan_.num_ep_ranks()) {
    problems.add(
        fmt::format("the communicator has {} ranks, but the maps need one per EP rank: {} "
                    "(old EP size {}, new EP size {})",
                    size, plan_.num_ep_ranks(), plan_.old_ep_size, plan_.new_ep_size));
  }
  if (plan_.old_num_slots_per_rank != plan_.new_num_slots_per_rank) {
    problems.add(
        fmt::format("an update in place needs as many slots per rank in the new map ({}) "
                    "as in the old one ({})",
                    plan_.new_num_slots_per_rank, plan_.old_num_slots_per_rank));
  }
  num_rows_ = plan_.new_num_slots_per_rank;
  if (layers_.size() != plan_.layers.size()) {
    problems.add(fmt::format("{} layers of tensors given, but the maps have {}", layers_.size(),
                             plan_.layers.size()));
  }
  const size_t num_tensors = layers_.empty() ? 0 : layers_[0].size();
  if (!layers_.empty() && num_tensors == 0) problems.add("layer 0 has no tensors");
  const int device = num_tensors > 0 ? device_of(layers_[0][0].data) : -1;
  for (size_t l = 0; l < layers_.size() && num_tensors > 0; ++l) {
    const auto& layer = layers_[l];
    if (layer.size() != num_tensors) {
      problems.add(
          fmt::format("layer {} has {} tensors, layer 0 has {}", l, layer.size(), num_tensors));
      continue;
    }
    for (size_t k = 0; k < num_tensors; ++k) {
      const TensorRows& t = layer[k];
      const TensorRows& first = layers_[0][k];
      const std::string where = fmt::format("layer {}, tensor {}", l, k);
      if (t.data == nullptr) problems.add(where + ": no data (null pointer)");
      if (t.num_rows != num_rows_) {
        problems.add(fmt::format("{}: {} rows, but this rank has {} physical slots per layer",
                                 where, t.num_rows, num_rows_));
      }
      if (t.row_bytes <= 0) problems.add(fmt::format("{}: row of {} bytes", where, t.row_bytes));
      if (t.row_bytes != first.row_bytes) {
        problems.add(fmt::format("{}: rows of {} bytes, but layer 0's tensor {} has {}", where,
                                 t.row_bytes, k, first.row_bytes));
      }
      if (t.tag != first.tag) {
        problems.add(fmt::format("{}: dtype or shape differs from layer 0's tensor {}", where, k));
      }
      if (t.data != nullptr && device_of(t.data) != device) {
        problems.add(fmt::format("{}: on {}, but layer 0's tensor 0 is on {}", where,
                                 device_of(t.data) < 0 ? "the host" : "a GPU",
                                 device < 0 ? "the host" : "a GPU"));
      }
    }
  }
  // One agreement: [a flag per rank] + [fingerprint, -fingerprint] x 3.
  uint64_t layout = mix(num_tensors, static_cast<uint64_t>(device >= 0));
  for (size_t k = 0; k < num_tensors; ++k) {
    layout = mix(mix(layout, static_cast<uint64_t>(layers_[0][k].row_bytes)), layers_[0][k].tag);
  }
  const long long fps[] = {fingerprint(plan_hash(plan_)), fingerprint(layout),
                           static_cast<long long>(options_.staging_bytes >> 2)};
  std::vector<long long> values(static_cast<size_t>(std::max(size, 1)), 0);
  if (!problems.empty() && rank_ >= 0 && rank_ < size) values[static_cast<size_t>(rank_)] = 1;
  for (long long f : fps) {
    values.push_back(f);
    values.push_back(-f);
  }
  const auto agreed = transport_.all_max(values, "checking the tensors and maps on every rank");
  std::vector<int> bad;
  for (int r = 0; r < size; ++r) {
    if (agreed[static_cast<size_t>(r)] != 0) bad.push_back(r);
  }
  if (!problems.empty()) throw Error(ErrorKind::kInput, problems.problems());
  if (!bad.empty()) {
    std::string list;
    for (int r : bad) list += (list.empty() ? "" : ", ") + std::to_string(r);
    throw Error(ErrorKind::kInput,
                fmt::format("rank{} {} refused {} tensors or maps (its message says why); nothing "
                            "has moved",
                            bad.size() == 1 ? "" : "s", list, bad.size() == 1 ? "its" : "their"));
  }
  const char* what[] = {"maps (their plans differ)",
                        "tensors (count, row bytes, dtype/shape or host/GPU differ)",
                        "staging budgets"};
  const size_t base = static_cast<size_t>(std::max(size, 1));
  for (size_t i = 0; i < 3; ++i) {
    if (agreed[base + 2 * i] != -agreed[base + 2 * i + 1]) {
      throw Error(ErrorKind::kInput,
                  fmt::format("the ranks passed different {}; nothing has moved", what[i]));
    }
  }
}

std::byte* Rearranger::staging_row(size_t group_pos, int32_t layer_idx, size_t t,
                                   int32_t row) const {
  const auto l = static_cast<size_t>(layer_idx);
  size_t before = 0;  // bytes of one row of the tensors before t
  for (size_t k = 0; k < t; ++k) before += row_bytes_[k];
  const auto changed = static_cast<size_t>(changed_[l]);
  const auto slot = static_cast<size_t>(slot_of_[l][static_cast<size_t>(row)]);
  return staging_ + group_offset_[group_pos] + changed * before + slot * row_bytes_[t];
}

exchange::ExchangeCounts Rearranger::exchange_group(const std::vector<int32_t>& layers,
                                                    void* caller_stream) {
  memory_->make_current();
  memory_->before_exchange(caller_stream);
  group_offset_.clear();
  size_t at = 0;
  for (int32_t l : layers) {
    group_offset_.push_back(at);
    at += static_cast<size_t>(changed_[static_cast<size_t>(l)]) * expert_bytes_;
  }
  const auto pos_of = [&layers](int32_t layer_idx) {
    return static_cast<size_t>(std::find(layers.begin(), layers.end(), layer_idx) - layers.begin());
  };
  const auto old_row = [this](int32_t layer_idx, size_t t, int32_t row) {
    return layers_[static_cast<size_t>(layer_idx)][t].data +
           static_cast<size_t>(row) * row_bytes_[t];
  };
  exchange::ExchangeRows rows{[&old_row](int32_t layer_idx, int32_t, size_t t, int32_t row) {
                                return old_row(layer_idx, t, row);
                              },
                              [this, &pos_of](int32_t layer_idx, int32_t, size_t t, int32_t row) {
                                return staging_row(pos_of(layer_idx), layer_idx, t, row);
                              },
                              {},
                              {}};
  if (!options_.verify) return exchange_->run(layers, rows, memory_->copier());
  // Every old row's checksum, computed where it lies: the ones the rows sent or copied get.
  std::vector<ConstRow> sources;
  for (int32_t l : layers) {
    for (size_t t = 0; t < row_bytes_.size(); ++t) {
      for (int32_t row = 0; row < num_rows_; ++row)
        sources.push_back({old_row(l, t, row), row_bytes_[t]});
    }
  }
  old_sums_ = memory_->hash(sources);
  new_sums_.assign(old_sums_.size(), 0);
  rows.old_sum = [this, &pos_of](int32_t layer_idx, int32_t, size_t t, int32_t row) {
    return old_sums_[sum_index(pos_of(layer_idx), t, row)];
  };
  rows.new_sum = [this, &pos_of](int32_t layer_idx, int32_t, size_t t, int32_t row) -> uint64_t& {
    return new_sums_[sum_index(pos_of(layer_idx), t, row)];
  };
  const exchange::ExchangeCounts counts = exchange_->run(layers, rows, memory_->copier());
  verify(layers);
  return counts;
}

void Rearranger::verify(const std::vector<int32_t>& layers) {
  std::vector<ConstRow> landed;
  std::vector<std::tuple<size_t, int32_t, size_t, int32_t>> where;  // pos, layer, tensor, row
  for (size_t pos = 0; pos < layers.size(); ++pos) {
    const int32_t l = layers[pos];
    for (int32_t row = 0; row < num_rows_; ++row) {
      if (slot_of_[static_cast<size_t>(l)][static_cast<size_t>(row)] < 0) continue;
      for (size_t t = 0; t < row_bytes_.size(); ++t) {
        landed.push_back({staging_row(pos, l, t, row), row_bytes_[t]});
        where.emplace_back(pos, l, t, row);
      }
    }
  }
  if (!landed.empty() && corrupt_injected(rank_)) {
    memory_->flip_byte(const_cast<std::byte*>(landed[0].data));
  }
  const std::vector<uint64_t> sums = memory_->hash(landed);
  core::ProblemList problems(ErrorKind::kVerify);
  for (size_t i = 0; i < landed.size(); ++i) {
    const auto [pos, l, t, row] = where[i];
    if (sums[i] == new_sums_[sum_index(pos, t, row)]) continue;
    const plan::RowPlan& rp = plan_.layers[static_cast<size_t>(l)]
                                  .rows[static_cast<size_t>(rank_)][static_cast<size_t>(row)];
    const std::string source =
        rp.source == plan::RowSource::kReceived ? fmt::format("received from rank {}", rp.peer)
        : rp.source == plan::RowSource::kEmpty  ? std::string("zeroed")
                                                : fmt::format("copied from row {}", rp.src_row);
    problems.add(
        fmt::format("layer {}, physical slot {} (logical expert {}), tensor {}: the bytes "
                    "{} do not match the checksum of their source slot; nothing was "
                    "placed",
                    l, rank_ * num_rows_ + row, rp.expert_id, t, source));
  }
  // Every rank's rows check out, or no rank places any.
  const long long bad =
      transport_.all_max({problems.empty() ? 0LL : 1LL}, "checking the received rows")[0];
  if (!problems.empty()) throw Error(ErrorKind::kVerify, problems.problems());
  if (bad != 0) {
    throw Error(ErrorKind::kVerify,
                "another rank's received rows did not match their checksums (its message says "
                "which); nothing was placed");
  }
}

std::vector<RowCopy> Rearranger::placements(const std::vector<int32_t>& layers) const {
  std::vector<RowCopy> copies;
  for (size_t pos = 0; pos < layers.size(); ++pos) {
    const int32_t l = layers[pos];
    const auto& slots = slot_of_[static_cast<size_t>(l)];
    for (int32_t row = 0; row < num_rows_; ++row) {
      if (slots[static_cast<size_t>(row)] < 0) continue;
      for (size_t t = 0; t < row_bytes_.size(); ++t) {
        copies.push_back(
            {layers_[static_cast<size_t>(l)][t].data + static_cast<size_t>(row) * row_bytes_[t],
             staging_row(pos, l, t, row), row_bytes_[t]});
      }
    }
  }
  return copies;
}

RearrangeReport Rearranger::rearrange(void* caller_stream) {
  if (started_ >= 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("layer {} was started and not finished: finish it first", started_));
  }
  const auto start = core::Clock::now();
  RearrangeReport report;
  report.staging_bytes = static_cast<long long>(staging_bytes_);
  for (const auto& g : groups_) {
    report.layers_per_exchange =
        std::max(report.layers_per_exchange, static_cast<long long>(g.size()));
  }
  if (options_.profile) {
    // Nothing moves; every rank got this far (the buffers exist everywhere).
    transport_.all_max({0}, "the profile run");
  } else {
    for (const auto& group : groups_) {
      const exchange::ExchangeCounts counts = exchange_group(group, caller_stream);
      memory_->place(placements(group), nullptr, /*wait=*/true);
      report.bytes_sent += counts.bytes_sent;
      report.bytes_received += counts.bytes_received;
      report.rows_rewritten += counts.rows_rewritten;
      caller_stream = nullptr;  // its work was waited for before the first group
    }
  }
  report.seconds = core::seconds_since(start);
  return report;
}

void Rearranger::start(int32_t layer_idx, void* caller_stream) {
  if (started_ >= 0) {
    throw Error(ErrorKind::kUsage,
                fmt::format("layer {} is started already: finish it before starting layer {}",
                            started_, layer_idx));
  }
  if (layer_idx < 0 || layer_idx >= static_cast<int32_t>(plan_.layers.size())) {
    throw Error(ErrorKind::kUsage,
                fmt::format("layer {} is not in [0, {})", layer_idx, plan_.layers.size()));
  }
  started_ = layer_idx;
  landed_.reset();
  if (options_.profile) {
    landed_.emplace();
    return;
  }
  pending_ = std::async(std::launch::async, [this, layer_idx, caller_stream] {
    return exchange_group({layer_idx}, caller_stream);
  });
}

void Rearranger::expect_started(int32_t layer_idx) const {
  if (started_ != layer_idx) {
    throw Error(ErrorKind::kUsage,
                started_ < 0
                    ? fmt::format("layer {} was not started", layer_idx)
                    : fmt::format("layer {} was not started (layer {} is)", layer_idx, started_));
  }
}

bool Rearranger::test(int32_t layer_idx) {
  expect_started(layer_idx);
  if (landed_) return true;
  if (pending_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
  try {
    landed_ = pending_.get();
  } catch (...) {
    started_ = -1;
    throw;
  }
  return true;
}

RearrangeReport Rearranger::finish(int32_t layer_idx, void* caller_stream) {
  expect_started(layer_idx);
  const auto start = core::Clock::now();
  if (!landed_) {
    // The transport gives up within the timeout; this wait only guards against a bug.
    if (pending_.wait_for(options_.timeout + std::chrono::seconds(10)) !=
        std::future_status::ready) {
      throw Error(ErrorKind::kComm, fmt::format("layer {} did not land within {} ms", layer_idx,
                                                options_.timeout.count()));
    }
    try {
      landed_ = pending_.get();
    } catch (...) {
      started_ = -1;
      throw;
    }
  }
  RearrangeReport report;
  report.staging_bytes = static_cast<long long>(staging_bytes_);
  report.layers_per_exchange = 1;
  if (!options_.profile) {
    memory_->place(placements({layer_idx}), caller_stream, /*wait=*/!memory_->device());
    report.bytes_sent = landed_->bytes_sent;
    report.bytes_received = landed_->bytes_received;
    report.rows_rewritten = landed_->rows_rewritten;
  }
  started_ = -1;
  landed_.reset();
  report.seconds = core::seconds_since(start);
  return report;
}

}  // namespace eplb::capi
