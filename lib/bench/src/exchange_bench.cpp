// `bench`: our exchange vs raw NCCL send/recv vs the vLLM pattern, same GPUs, same bytes.
// NCCL builds only; exchange_bench_stub.cpp stands in otherwise.
#include "eplb/bench/exchange_bench.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "eplb/bench/timing.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/mix.hpp"
#include "eplb/engine/rebalance.hpp"
#include "eplb/exchange/device_copier.hpp"
#include "eplb/exchange/layer_exchange.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/runtime/batched_copy.hpp"
#include "eplb/transport/mpi_transport.hpp"
#include "eplb/transport/nccl_detail.hpp"

namespace eplb::bench {

namespace {

using placement::Placement;
using runtime::DeviceBuffer;
using transport::NcclTransport;

// Old and new placements: every logical expert once plus `redundant` random replicas,
// shuffled per layer; the same on every process (seeded).
Placement random_placement(const BenchOptions& o, int32_t ep_size, uint64_t salt) {
  const int32_t total = o.num_logical_experts + o.num_redundant_experts;
  if (ep_size <= 0 || total % ep_size != 0) {
    throw core::Error(core::ErrorKind::kUsage,
                      fmt::format("{} experts + {} redundant slots do not divide over {} GPUs",
                                  o.num_logical_experts, o.num_redundant_experts, ep_size));
  }
  Placement p{ep_size, total / ep_size, o.num_logical_experts, {}, {}};
  std::mt19937_64 rng(o.seed * 1000003 + salt);
  for (int32_t layer = 0; layer < o.num_layers; ++layer) {
    std::vector<int32_t> ids(static_cast<size_t>(total));  // total > 0: checked above
    const auto num_logical = static_cast<uint64_t>(o.num_logical_experts);
    for (int32_t i = 0; i < total; ++i) {
      ids[static_cast<size_t>(i)] =
          i < o.num_logical_experts ? i : static_cast<int32_t>(rng() % num_logical);
    }
    std::shuffle(ids.begin(), ids.end(), rng);
    p.physical_to_logical_map.push_back(std::move(ids));
  }
  return p;
}

using core::splitmix64;

// The content of (layer, expert, tensor): cheap to make and to check, unique per position.
void fill_pattern(int32_t layer, int32_t expert, size_t tensor, std::byte* out, size_t bytes) {
  const uint64_t key = splitmix64((uint64_t(layer) << 40) ^ (uint64_t(expert) << 8) ^ tensor);
  size_t words = bytes / 8;
  auto* w = reinterpret_cast<uint64_t*>(out);
  for (size_t i = 0; i < words; ++i) w[i] = key ^ (i * core::kSplitmixGamma);
  for (size_t i = words * 8; i < bytes; ++i) out[i] = static_cast<std::byte>(key >> (i % 8));
}

// Device weights of one GPU: [layer][tensor] -> [rows, row_bytes].
struct Weights {
  std::vector<std::vector<DeviceBuffer> > buffers;
  std::vector<size_t> row_bytes;
  // `layer` and `r` are non-negative: a layer index and a row of this rank.
  std::byte* row(int32_t layer, size_t t, int32_t r) const {
    return buffers[static_cast<size_t>(layer)][t].data() + row_bytes[t] * static_cast<size_t>(r);
  }
  std::byte* layer_data(int32_t layer, size_t t) const { return row(layer, t, 0); }
};

Weights allocate_weights(NcclTransport& tr, const std::vector<io::TensorSpec>& tensors,
                         int32_t num_layers, int32_t rows) {
  Weights w;
  for (const auto& spec : tensors) w.row_bytes.push_back(spec.row_bytes());
  w.buffers.resize(static_cast<size_t>(num_layers));
  for (auto& layer : w.buffers) {
    for (size_t t = 0; t < tensors.size(); ++t) {
      layer.push_back(tr.allocate_device(w.row_bytes[t] * static_cast<size_t>(rows)));
    }
  }
  return w;
}

// Host staging for uploads and checks, one tensor of one layer at a time.
void upload(const Weights& w, const Placement& p, int32_t rank, runtime::PinnedBuffer& host) {
  const int32_t rows = p.num_slots_per_rank;
  for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
    for (size_t t = 0; t < w.row_bytes.size(); ++t) {
      for (int32_t r = 0; r < rows; ++r) {
        fill_pattern(layer, p.expert_at(layer, rank, r), t,
                     host.data() + w.row_bytes[t] * static_cast<size_t>(r), w.row_bytes[t]);
      }
      EPLB_CUDA_CHECK(cudaMemcpy(w.layer_data(layer, t), host.data(),
                                 w.row_bytes[t] * static_cast<size_t>(rows),
                                 cudaMemcpyHostToDevice));
    }
  }
}

bool matches(const Weights& w, const Placement& p, int32_t rank, runtime::PinnedBuffer& host) {
  const int32_t rows = p.num_slots_per_rank;
  std::vector<std::byte> want;
  for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
    for (size_t t = 0; t < w.row_bytes.size(); ++t) {
      EPLB_CUDA_CHECK(cudaMemcpy(host.data(), w.layer_data(layer, t),
                                 w.row_bytes[t] * static_cast<size_t>(rows),
                                 cudaMemcpyDeviceToHost));
      want.resize(w.row_bytes[t]);
      for (int32_t r = 0; r < rows; ++r) {
        int32_t expert = p.expert_at(layer, rank, r);
        if (expert < 0) {
          std::fill(want.begin(), want.end(), std::byte{0});
        } else {
          fill_pattern(layer, expert, t, want.data(), want.size());
        }
        if (std::memcmp(want.data(), host.data() + w.row_bytes[t] * static_cast<size_t>(r),
                        want.size()) != 0) {
          return false;
        }
      }
    }
  }
  return true;
}

void scrub(const Weights& w) {
  for (auto& layer : w.buffers) {
    for (auto& b : layer) EPLB_CUDA_CHECK(cudaMemset(b.data(), 0xAB, b.size()));
  }
  EPLB_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace

namespace {

struct Context {
  const runtime::MpiSession& session;
  const BenchOptions& o;
  NcclTransport& tr;
  const Weights& old_w;
  const Weights& new_w;
  int32_t rank;
  cudaStream_t copy_stream;
};

// The local row copies run next to the whole exchange, so they take few SMs: on 2 and 4
// H200s 32 blocks beat 64 (a/b 0.888 vs 0.862 and 0.893 vs 0.865); 16 left them last.
constexpr unsigned kLocalCopyBlocks = 32;

// The new rows of EP rank `rank` in layer `layer` (both non-negative, within the plan).
const std::vector<plan::RowPlan>& layer_rows(const plan::Plan& plan, int32_t layer, int32_t rank) {
  return plan.layers[static_cast<size_t>(layer)].rows[static_cast<size_t>(rank)];
}

// The network part alone: local rows are left as they are (not a complete rebalance).
class NoCopies final : public exchange::Copier {
 public:
  void copy(std::byte*, const std::byte*, size_t) override {}
  void zero(std::byte*, size_t) override {}
  void issue() override {}
  void finish() override {}
};

// (a) Ours: the one exchange body over every resident layer at once (one stream per peer,
// cut into rounds by the transport); local rows copied next to it on another stream
// (unless `with_local_rows` is false: the network part alone, to show what they cost).
void run_ours(const Context& c, const plan::Plan& plan, bool with_local_rows = true) {
  // One process per EP rank; messages carry no checksum trailer (weights stay on the GPU).
  const plan::ProcessMap map{c.session.size(), c.session.size()};
  exchange::LayerExchange body(plan, map, c.rank, c.old_w.row_bytes, c.tr);
  const exchange::ExchangeRows rows{
      [&](int32_t layer, int32_t, size_t t, int32_t row) { return c.old_w.row(layer, t, row); },
      [&](int32_t layer, int32_t, size_t t, int32_t row) { return c.new_w.row(layer, t, row); },
      {},
      {}};
  std::vector<int32_t> layers(static_cast<size_t>(c.o.num_layers));
  for (int32_t l = 0; l < c.o.num_layers; ++l) layers[static_cast<size_t>(l)] = l;
  if (with_local_rows) {
    exchange::DeviceCopier copier(c.copy_stream, kLocalCopyBlocks, c.session.timeout());
    body.run(layers, rows, copier);
  } else {
    NoCopies none;
    body.run(layers, rows, none);
  }
}

// Per-peer byte volumes of a plan for this rank: [peer] -> (sent, received).
std::vector<std::pair<size_t, size_t> > peer_volumes(const Context& c, const plan::Plan& plan) {
  const size_t expert = io::expert_bytes(c.o.tensors);
  std::vector<std::pair<size_t, size_t> > v(static_cast<size_t>(c.session.size()));
  for (const auto& layer : plan.layers) {
    for (const auto* m : plan::messages_from(layer, c.rank))
      v[static_cast<size_t>(m->dst_rank)].first += m->expert_ids.size() * expert;
    for (const auto* m : plan::messages_to(layer, c.rank))
      v[static_cast<size_t>(m->src_rank)].second += m->expert_ids.size() * expert;
  }
  return v;
}

// (b) Raw NCCL: the same per-peer volumes from contiguous buffers, one group.
void run_raw(const Context& c, const std::vector<std::pair<size_t, size_t> >& volumes,
             const DeviceBuffer& send, const DeviceBuffer& recv) {
  size_t so = 0, ro = 0;
  ncclGroupStart();
  for (int peer = 0; peer < static_cast<int>(volumes.size()); ++peer) {
    auto [s, r] = volumes[static_cast<size_t>(peer)];
    if (s > 0)
      EPLB_NCCL_CHECK(ncclSend(send.data() + so, s, ncclUint8, peer, c.tr.comm(), c.tr.stream()));
    if (r > 0)
      EPLB_NCCL_CHECK(ncclRecv(recv.data() + ro, r, ncclUint8, peer, c.tr.comm(), c.tr.stream()));
    so += s;
    ro += r;
  }
  c.tr.group_end("raw all-to-all group");
  c.tr.wait(c.tr.stream(), "raw all-to-all");
}

// (c) The vLLM pattern, per layer: local rows into a one-layer buffer, one NCCL send and
// receive per expert tensor in one group (sorted by expert id), then buffer -> weights.
void run_vllm(const Context& c, const plan::Plan& plan, const Weights& buffer) {
  cudaStream_t s = c.tr.stream();
  const size_t nt = c.o.tensors.size();
  for (int32_t layer = 0; layer < c.o.num_layers; ++layer) {
    const auto& lp = plan.layers[static_cast<size_t>(layer)];
    const auto& rows = layer_rows(plan, layer, c.rank);
    for (int32_t r = 0; r < static_cast<int32_t>(rows.size()); ++r) {
      const auto& rp = rows[static_cast<size_t>(r)];
      if (rp.source != plan::RowSource::kLocal) continue;
      for (size_t t = 0; t < nt; ++t) {
        EPLB_CUDA_CHECK(cudaMemcpyAsync(buffer.row(0, t, r), c.old_w.row(layer, t, rp.src_row),
                                        c.old_w.row_bytes[t], cudaMemcpyDeviceToDevice, s));
      }
    }
    // (expert, peer, row) sorted by expert id on both sides, as vLLM orders its P2P ops.
    std::vector<std::tuple<int32_t, int32_t, int32_t> > out, in;
    for (const auto* m : plan::messages_from(lp, c.rank)) {
      for (size_t k = 0; k < m->expert_ids.size(); ++k)
        out.emplace_back(m->expert_ids[k], m->dst_rank, m->src_rows[k]);
    }
    for (const auto* m : plan::messages_to(lp, c.rank)) {
      for (size_t k = 0; k < m->expert_ids.size(); ++k)
        in.emplace_back(m->expert_ids[k], m->src_rank, m->dst_rows[k]);
    }
    std::sort(out.begin(), out.end());
    std::sort(in.begin(), in.end());
    ncclGroupStart();
    for (auto [e, peer, row] : out) {
      for (size_t t = 0; t < nt; ++t) {
        EPLB_NCCL_CHECK(ncclSend(c.old_w.row(layer, t, row), c.old_w.row_bytes[t], ncclUint8, peer,
                                 c.tr.comm(), s));
      }
    }
    for (auto [e, peer, row] : in) {
      for (size_t t = 0; t < nt; ++t) {
        EPLB_NCCL_CHECK(
            ncclRecv(buffer.row(0, t, row), c.old_w.row_bytes[t], ncclUint8, peer, c.tr.comm(), s));
      }
    }
    c.tr.group_end("vLLM-pattern group");
    for (int32_t r = 0; r < static_cast<int32_t>(rows.size()); ++r) {
      const auto& rp = rows[static_cast<size_t>(r)];
      for (size_t t = 0; t < nt; ++t) {
        std::byte* dst = c.new_w.row(layer, t, r);
        const size_t bytes = c.old_w.row_bytes[t];
        switch (rp.source) {
          case plan::RowSource::kUnchanged:
            EPLB_CUDA_CHECK(
                cudaMemcpyAsync(dst, c.old_w.row(layer, t, r), bytes, cudaMemcpyDeviceToDevice, s));
            break;
          case plan::RowSource::kLocal:
          case plan::RowSource::kReceived:
            EPLB_CUDA_CHECK(
                cudaMemcpyAsync(dst, buffer.row(0, t, r), bytes, cudaMemcpyDeviceToDevice, s));
            break;
          case plan::RowSource::kCopy:
            EPLB_CUDA_CHECK(cudaMemcpyAsync(dst, buffer.row(0, t, rp.src_row), bytes,
                                            cudaMemcpyDeviceToDevice, s));
            break;
          case plan::RowSource::kEmpty:
            EPLB_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s));
            break;
        }
      }
    }
  }
  c.tr.wait(s, "vLLM pattern");
}

double median_seconds(const Context& c, const std::function<void()>& run) {
  return bench::median_seconds(c.session.group(), c.o.warmup, c.o.iterations, run);
}

long long busiest(const Context& c, const std::vector<std::pair<size_t, size_t> >& volumes) {
  long long sent = 0, received = 0;
  for (auto [s, r] : volumes) {
    sent += static_cast<long long>(s);
    received += static_cast<long long>(r);
  }
  return runtime::all_max(c.session.group(), {std::max(sent, received)},
                          "bench: the busiest rank's bytes")[0];
}

// NCCL sends of the vLLM pattern: one per expert tensor.
long long count_tensor_sends(const Context& c, const plan::Plan& plan) {
  long long n = 0;
  for (const auto& layer : plan.layers) {
    for (const auto* m : plan::messages_from(layer, c.rank)) {
      n += static_cast<long long>(m->expert_ids.size() * c.o.tensors.size());
    }
  }
  return runtime::all_sum(c.session.group(), {n}, "bench: counting NCCL sends")[0];
}

bool all_match(const Context& c, const Placement& p, runtime::PinnedBuffer& host) {
  return runtime::all_true(c.session.group(), matches(c.new_w, p, c.rank, host),
                           "bench: checking the result");
}

long long device_used(const runtime::MpiSession& session) {
  size_t free_b = 0, total_b = 0;
  EPLB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return runtime::all_max(session.group(), {static_cast<long long>(total_b - free_b)},
                          "bench: device memory used")[0];
}

}  // namespace

BenchResult run_exchange_bench(const runtime::MpiSession& session, const BenchOptions& o) {
  const int32_t ep = session.size();
  const int32_t rank = session.rank();
  const Placement old_p = random_placement(o, ep, 1);
  const Placement new_p = random_placement(o, ep, 2);
  const plan::Topology topology = engine::agreed_topology(session, 0);
  const plan::Plan ours_plan =
      plan::make_plan(old_p, new_p, topology, plan::SenderPolicy::kBalanced);
  const plan::Plan vllm_plan = plan::make_plan(old_p, new_p, topology, plan::SenderPolicy::kVllm);

  transport::TransportOptions topts;
  topts.device_staging_bytes = o.max_staging_bytes;
  topts.timeout = session.timeout();
  topts.trace_rounds = o.trace;
  const auto made = transport::make_nccl_transport(session.comm(), session.node_rank(), topts);
  auto& tr = dynamic_cast<NcclTransport&>(*made);
  tr.wait_ready();  // the raw baselines use its communicator and stream directly
  runtime::Stream copy_stream;

  const int32_t rows = old_p.num_slots_per_rank;
  Weights old_w = allocate_weights(tr, o.tensors, o.num_layers, rows);
  Weights new_w = allocate_weights(tr, o.tensors, o.num_layers, rows);
  size_t max_tensor = 0;
  for (size_t b : old_w.row_bytes) max_tensor = std::max(max_tensor, b * static_cast<size_t>(rows));
  runtime::PinnedBuffer host(max_tensor);
  upload(old_w, old_p, rank, host);
  Context c{session, o, tr, old_w, new_w, rank, copy_stream.get()};

  BenchResult result;
  result.ep_size = ep;
  result.num_slots_per_rank = rows;
  result.expert_bytes = static_cast<long long>(io::expert_bytes(o.tensors));
  result.experts_moved = plan::summarize(ours_plan).experts_moved;
  result.weights_device_bytes = 2LL * o.num_layers * rows * result.expert_bytes;

  // (a) ours: checked once, then timed.
  MethodResult ours{"ours (packed, balanced)"};
  const auto volumes = peer_volumes(c, ours_plan);
  scrub(new_w);
  run_ours(c, ours_plan);
  ours.verified = all_match(c, new_p, host);
  ours.seconds = median_seconds(c, [&] { run_ours(c, ours_plan); });
  ours.busiest_bytes = busiest(c, volumes);
  // One stream per peer for all resident layers (split into rounds by the transport).
  ours.messages =
      runtime::all_sum(session.group(),
                       {static_cast<long long>(std::count_if(volumes.begin(), volumes.end(),
                                                             [](auto v) { return v.first > 0; }))},
                       "bench: counting streams")[0];
  ours.extra_device_bytes = static_cast<long long>(o.max_staging_bytes);
  long long peak = device_used(session);
  MethodResult ours_network = ours;
  ours_network.name = "ours, network part only";
  ours_network.verified = false;  // local rows are not filled: not a complete rebalance
  ours_network.seconds = median_seconds(c, [&] { run_ours(c, ours_plan, false); });

  // (b) raw NCCL all-to-all of the same per-peer volumes.
  size_t total_sent = 256, total_received = 256;  // never an empty buffer
  for (auto [sent, received] : volumes) {
    total_sent += sent;
    total_received += received;
  }
  MethodResult raw{"raw NCCL send/recv"};
  {
    DeviceBuffer send = tr.allocate_device(total_sent);
    DeviceBuffer recv = tr.allocate_device(total_received);
    raw.seconds = median_seconds(c, [&] { run_raw(c, volumes, send, recv); });
    raw.busiest_bytes = ours.busiest_bytes;
    raw.extra_device_bytes = static_cast<long long>(send.size() + recv.size());
    raw.messages = ours.messages;
    raw.verified = false;  // moves placeholder bytes: a ceiling, not a rebalance
    peak = std::max(peak, device_used(session));
  }
  // (b') the same from registered buffers, as our staging is: the stricter ceiling.
  MethodResult raw_registered{"raw NCCL, registered"};
  {
    DeviceBuffer send = DeviceBuffer::for_nccl(total_sent);
    DeviceBuffer recv = DeviceBuffer::for_nccl(total_received);
    if (runtime::all_true(session.group(), send.data() != nullptr && recv.data() != nullptr,
                          "bench: registered buffers everywhere?")) {
      runtime::NcclRegistration send_reg = tr.register_buffer(send);
      runtime::NcclRegistration recv_reg = tr.register_buffer(recv);
      raw_registered.seconds = median_seconds(c, [&] { run_raw(c, volumes, send, recv); });
      raw_registered.busiest_bytes = ours.busiest_bytes;
      raw_registered.extra_device_bytes = raw.extra_device_bytes;
      raw_registered.messages = ours.messages;
    }
  }

  // (c) the vLLM pattern with vLLM's pairing.
  MethodResult vllm{"vLLM pattern (per tensor)"};
  {
    Weights buffer = allocate_weights(tr, o.tensors, 1, rows);  // vLLM's one-layer buffer
    scrub(new_w);
    run_vllm(c, vllm_plan, buffer);
    vllm.verified = all_match(c, new_p, host);
    vllm.seconds = median_seconds(c, [&] { run_vllm(c, vllm_plan, buffer); });
    vllm.busiest_bytes = busiest(c, peer_volumes(c, vllm_plan));
    vllm.messages = count_tensor_sends(c, vllm_plan);
    vllm.extra_device_bytes = static_cast<long long>(rows) * result.expert_bytes;
    peak = std::max(peak, device_used(session));
  }
  result.peak_device_used_bytes = peak;
  result.methods = {ours, raw, vllm, ours_network, raw_registered};
  tr.close();
  return result;
}

}  // namespace eplb::bench
