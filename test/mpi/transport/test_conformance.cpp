// Transport conformance: one test body, run against every backend this machine can run
// (mpi always; nccl with pinned host and with device segments where a GPU is usable).
//
// NOTE: every rank runs every case and every exchange, in the same order: a rank that
// skipped one would leave its peers waiting. Checks are CHECKs (never abort a case
// half-way on one rank), and exchanges have a timeout, so a failure never hangs the job.
#include <mpi.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/core/mix.hpp"
#include "eplb/runtime/mpi.hpp"
#include "eplb/transport/mpi_transport.hpp"
#include "eplb/transport/nccl_transport.hpp"
#include "eplb/transport/transport.hpp"
#if EPLB_HAVE_NCCL
#include "eplb/transport/nccl_detail.hpp"
#endif

namespace {

using eplb::core::Error;
using eplb::core::ErrorKind;
using namespace eplb::transport;
using namespace std::chrono_literals;

constexpr std::byte kSentinel{0xEE};  // fills gaps between segments; must survive

// ---- memory a test's segments live in --------------------------------------------------

class Memory {
 public:
  virtual ~Memory() = default;
  virtual std::byte* data() = 0;
  virtual void write(const std::vector<std::byte>& image) = 0;  // whole buffer
  virtual std::vector<std::byte> read() = 0;
};

class HostMemory final : public Memory {
 public:
  HostMemory(Transport& t, size_t bytes) : buf_(t.allocate_host(bytes)), bytes_(bytes) {}
  std::byte* data() override { return buf_.data(); }
  void write(const std::vector<std::byte>& image) override {
    if (bytes_ > 0) std::memcpy(buf_.data(), image.data(), bytes_);
  }
  std::vector<std::byte> read() override { return {buf_.data(), buf_.data() + bytes_}; }

 private:
  HostBuffer buf_;
  size_t bytes_;
};

#if EPLB_HAVE_NCCL
struct NodeInfo {
  int rank = 0;
  int size = 1;
};

NodeInfo node_info() {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  NodeInfo info;
  MPI_Comm_rank(node, &info.rank);
  MPI_Comm_size(node, &info.size);
  MPI_Comm_free(&node);
  return info;
}

// NCCL refuses two ranks on one GPU: run it only with a GPU per process.
// Collective (node_info): every rank calls it, GPU or not.
bool nccl_usable_here() {
  const int node_size = node_info().size;
  int num_devices = 0;
  if (!nccl_available() || cudaGetDeviceCount(&num_devices) != cudaSuccess) return false;
  return node_size <= num_devices;
}

class DeviceMemory final : public Memory {
 public:
  DeviceMemory(Transport& t, size_t bytes)
      : buf_(dynamic_cast<NcclTransport&>(t).allocate_device(bytes)) {}
  std::byte* data() override { return buf_.data(); }
  void write(const std::vector<std::byte>& image) override {
    if (!image.empty())
      EPLB_CUDA_CHECK(cudaMemcpy(buf_.data(), image.data(), image.size(), cudaMemcpyHostToDevice));
  }
  std::vector<std::byte> read() override {
    std::vector<std::byte> out(buf_.size());
    if (!out.empty())
      EPLB_CUDA_CHECK(cudaMemcpy(out.data(), buf_.data(), out.size(), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  eplb::runtime::DeviceBuffer buf_;
};
#endif

// ---- backends: the "bootstraps" the one body runs under ----------------------------------

struct Backend {
  std::string name;
  std::function<std::unique_ptr<Transport>(const TransportOptions&)> make;
  std::function<std::unique_ptr<Memory>(Transport&, size_t)> allocate;
};

std::vector<Backend> backends() {
  auto host = [](Transport& t, size_t n) { return std::make_unique<HostMemory>(t, n); };
  std::vector<Backend> out;
  out.push_back({"mpi",
                 [](const TransportOptions& o) { return make_mpi_transport(MPI_COMM_WORLD, o); },
                 host});
  // NOTE: decided collectively: every rank must run the same cases.
#if EPLB_HAVE_NCCL
  bool usable = nccl_usable_here();
#else
  bool usable = false;
#endif
  if (!eplb::runtime::all_true({MPI_COMM_WORLD, std::chrono::minutes(1)}, usable, "test")) {
    static bool warned = false;
    if (!warned) {
      WARN(
          "nccl backend skipped: built without NCCL, no usable GPU, or fewer GPUs than "
          "processes on a node");
    }
    warned = true;
    return out;
  }
#if EPLB_HAVE_NCCL
  int local = node_info().rank;
  auto make_nccl = [local](const TransportOptions& o) {
    return make_nccl_transport(MPI_COMM_WORLD, local, o);
  };
  out.push_back({"nccl/pinned", make_nccl, host});
  out.push_back({"nccl/device", make_nccl,
                 [](Transport& t, size_t n) { return std::make_unique<DeviceMemory>(t, n); }});
#endif
  return out;
}

// ---- deterministic payloads and layouts -------------------------------------------------

using eplb::core::splitmix64;

std::byte payload(int src, int dst, int iter, size_t idx) {
  uint64_t key = (uint64_t(src) << 48) ^ (uint64_t(dst) << 32) ^ (uint64_t(iter) << 24);
  return std::byte(splitmix64(key ^ splitmix64(idx)) & 0xFF);
}

// Bytes src sends dst in exchange `iter`: known to both sides; 0, 1, odd and large sizes.
size_t pair_bytes(int src, int dst, int iter, size_t max_bytes) {
  uint64_t h = splitmix64((uint64_t(src) << 40) ^ (uint64_t(dst) << 20) ^ uint64_t(iter) ^ 0x5EED);
  switch (h % 8) {
    case 0:
      return 0;
    case 1:
      return 1;
    case 2:
      return max_bytes;  // the largest, often a multiple of the chunk size
    default:
      return (h >> 8) % max_bytes | 1;  // odd
  }
}

enum class Cut { kOne, kMany };

// Where each piece of the stream lives in the buffer, in stream order.
struct Layout {
  size_t buffer_bytes = 0;
  std::vector<std::pair<size_t, size_t>> pieces;  // (offset, bytes)
};

// kMany: pieces of 0..max_piece bytes (zero-length included), gaps between them, and on
// odd seeds laid out in reverse address order, so segment order != address order.
Layout cut(size_t total, Cut how, uint64_t seed, size_t max_piece = 777) {
  Layout layout;
  if (how == Cut::kOne) {
    layout.buffer_bytes = total;
    if (total > 0) layout.pieces.push_back({0, total});
    return layout;
  }
  std::vector<size_t> lengths;
  for (size_t left = total, i = 0; left > 0 || i == 0; ++i) {
    size_t n = std::min(left, static_cast<size_t>(splitmix64(seed + i) % (max_piece + 1)));
    lengths.push_back(n);
    left -= n;
  }
  size_t offset = 0;
  std::vector<size_t> offsets;
  for (size_t i = 0; i < lengths.size(); ++i) {
    offsets.push_back(offset);
    offset += lengths[i] + 1 + splitmix64(seed ^ i) % 7;  // gap of 1..7 bytes
  }
  layout.buffer_bytes = offset;
  bool reverse = seed % 2 == 1;
  for (size_t i = 0; i < lengths.size(); ++i) {
    size_t at = reverse ? layout.buffer_bytes - offsets[i] - lengths[i] - 1 : offsets[i];
    layout.pieces.push_back({at, lengths[i]});
  }
  return layout;
}

// One side of one pair: its memory, how the stream is laid out in it, the Transfer.
struct Side {
  std::unique_ptr<Memory> memory;
  Layout layout;
  Transfer transfer;
};

Side make_side(const Backend& backend, Transport& t, int peer, size_t total, Cut how,
               uint64_t seed) {
  Side side;
  side.layout = cut(total, how, seed);
  side.memory = backend.allocate(t, side.layout.buffer_bytes);
  side.transfer.peer = peer;
  for (auto [offset, bytes] : side.layout.pieces) {
    side.transfer.segments.push_back({side.memory->data() + offset, bytes});
  }
  return side;
}

// ---- the body ---------------------------------------------------------------------------

struct Pattern {
  size_t max_pair_bytes = 50'000;
  Cut send_cut = Cut::kMany;
  Cut recv_cut = Cut::kOne;
};

// One all-to-all exchange on `t`; returns the number of wrong bytes seen by this rank.
size_t exchange_and_verify(const Backend& backend, Transport& t, int iter, const Pattern& pattern) {
  const int rank = t.rank(), size = t.size();
  std::vector<Side> sends, recvs;
  for (int peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    size_t out = pair_bytes(rank, peer, iter, pattern.max_pair_bytes);
    Side s = make_side(backend, t, peer, out, pattern.send_cut,
                       splitmix64(static_cast<uint64_t>(rank * 131 + peer + iter)));
    std::vector<std::byte> image(s.layout.buffer_bytes, kSentinel);
    size_t idx = 0;
    for (auto [offset, bytes] : s.layout.pieces) {
      for (size_t i = 0; i < bytes; ++i) image[offset + i] = payload(rank, peer, iter, idx++);
    }
    s.memory->write(image);
    sends.push_back(std::move(s));
    size_t in = pair_bytes(peer, rank, iter, pattern.max_pair_bytes);
    Side r = make_side(backend, t, peer, in, pattern.recv_cut,
                       splitmix64(static_cast<uint64_t>(peer * 977 + rank + iter)));
    r.memory->write(std::vector<std::byte>(r.layout.buffer_bytes, kSentinel));
    recvs.push_back(std::move(r));
  }
  std::vector<Transfer> send_list, recv_list;
  for (auto& s : sends) send_list.push_back(s.transfer);
  for (auto& r : recvs) recv_list.push_back(r.transfer);
  t.exchange(send_list, recv_list);

  size_t wrong = 0;
  for (auto& r : recvs) {
    std::vector<std::byte> image = r.memory->read();
    std::vector<char> is_payload(image.size(), 0);
    size_t idx = 0;
    for (auto [offset, bytes] : r.layout.pieces) {
      for (size_t i = 0; i < bytes; ++i, ++idx) {
        is_payload[offset + i] = 1;
        wrong += image[offset + i] != payload(r.transfer.peer, rank, iter, idx);
      }
    }
    for (size_t i = 0; i < image.size(); ++i) wrong += !is_payload[i] && image[i] != kSentinel;
  }
  return wrong;
}

void run_exchanges(const Backend& backend, const TransportOptions& options, const Pattern& pattern,
                   int num_iters) {
  INFO("backend " << backend.name);
  auto t = backend.make(options);
  CHECK(t->name() == backend.name.substr(0, backend.name.find('/')));
  for (int iter = 0; iter < num_iters; ++iter) {
    INFO("rank " << t->rank() << ", exchange " << iter);
    CHECK(exchange_and_verify(backend, *t, iter, pattern) == 0);
  }
  t->close();
}

TransportOptions test_options() {
  TransportOptions o;
  o.timeout = 60s;  // a broken transport fails the test instead of hanging it
  return o;
}

}  // namespace

TEST_CASE("transport: all-to-all with random sizes, segments cut differently per side") {
  for (const auto& backend : backends()) {
    run_exchanges(backend, test_options(), {50'000, Cut::kMany, Cut::kOne}, 2);
    run_exchanges(backend, test_options(), {50'000, Cut::kOne, Cut::kMany}, 2);
    run_exchanges(backend, test_options(), {50'000, Cut::kMany, Cut::kMany}, 2);
  }
}

TEST_CASE("transport: messages larger than the limit are split into chunks") {
  for (const auto& backend : backends()) {
    TransportOptions o = test_options();
    o.max_message_bytes = 1000;         // MPI: ~20 messages per pair
    o.device_staging_bytes = 64 << 10;  // NCCL: 16 KiB per staging half, many rounds
    run_exchanges(backend, o, {20'000, Cut::kMany, Cut::kOne}, 3);
    run_exchanges(backend, o, {2'000, Cut::kOne, Cut::kMany}, 2);  // exact multiple
  }
}

TEST_CASE("transport: repeated exchanges on one transport, some empty") {
  for (const auto& backend : backends()) {
    INFO("backend " << backend.name);
    auto t = backend.make(test_options());
    for (int iter = 0; iter < 6; ++iter) {
      INFO("rank " << t->rank() << ", exchange " << iter);
      if (iter % 3 == 2) {
        t->exchange({}, {});  // collective even with nothing to move
        continue;
      }
      CHECK(exchange_and_verify(backend, *t, iter, {4'096, Cut::kMany, Cut::kMany}) == 0);
    }
    t->close();
  }
}

TEST_CASE("transport: invalid transfers are internal errors") {
  for (const auto& backend : backends()) {
    INFO("backend " << backend.name);
    auto t = backend.make(test_options());
    std::byte byte{};
    auto expect_internal = [&](int peer, std::string_view text) {
      std::vector<Transfer> list{{peer, {{&byte, 1}}}};
      try {
        t->exchange(list, {});
        FAIL_CHECK("no error for peer " << peer);
      } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::kInternal);
        CHECK_THAT(e.what(), Catch::Contains(std::string(text)));
      }
    };
    expect_internal(t->rank(), "peer is the calling process itself");
    expect_internal(t->size(), "peer out of range");
    expect_internal(-1, "peer out of range");
    // Validation happens before anything moves: the transport still works.
    CHECK(exchange_and_verify(backend, *t, 0, {1'000, Cut::kMany, Cut::kOne}) == 0);
    t->close();
  }
}

TEST_CASE("transport: asking for NCCL where it is unusable is a communication error") {
  // Collective decision, like backends(): only where no rank can run NCCL.
  if (eplb::runtime::all_true({MPI_COMM_WORLD, std::chrono::minutes(1)}, !nccl_available(),
                              "test")) {
    try {
      make_nccl_transport(MPI_COMM_WORLD, 0, test_options());
      FAIL_CHECK("make_nccl_transport succeeded without a usable GPU");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kComm);
#if !EPLB_HAVE_NCCL
      CHECK(std::string(e.what()) == "NCCL backend not available in this build");
#else
      CHECK_THAT(e.what(), Catch::Contains("no usable CUDA device"));
#endif
    }
  }
}

// Last on purpose: afterwards the failed transports are unusable (NCCL: aborted).
TEST_CASE("transport: a peer that posts nothing makes the others time out") {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2) return;  // needs a peer to miss
  for (const auto& backend : backends()) {
    INFO("backend " << backend.name << ", rank " << rank);
    TransportOptions o = test_options();
    o.timeout = 1500ms;
    auto t = backend.make(o);
    std::vector<std::unique_ptr<Memory>> memory;
    std::vector<Transfer> sends, recvs;
    for (int peer = 0; peer < size && rank != 1; ++peer) {  // rank 1 posts nothing
      if (peer == rank) continue;
      for (auto* list : {&sends, &recvs}) {
        memory.push_back(backend.allocate(*t, 64));
        list->push_back({peer, {{memory.back()->data(), 64}}});
      }
    }
    auto start = std::chrono::steady_clock::now();
    if (rank == 1) {
      t->exchange({}, {});  // its own (empty) part completes at once
    } else {
      try {
        t->exchange(sends, recvs);
        FAIL_CHECK("exchange with a silent peer did not fail");
      } catch (const Error& e) {
        auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(e.kind() == ErrorKind::kComm);
        CHECK_THAT(e.what(), Catch::Contains("timed out after 1.5 s"));
        if (backend.name == "mpi") {
          CHECK_THAT(e.what(), Catch::Contains("waiting for rank 1 (receiving 64 bytes"));
        } else {
          CHECK_THAT(e.what(), Catch::Contains("(round 1 of 1) waiting for peer"));
        }
        CHECK(elapsed >= 1500ms);
        CHECK(elapsed < 15s);
      }
      // After a failure the transport refuses further use instead of hanging.
      CHECK_THROWS_AS(t->exchange({}, {}), Error);
    }
    // Everyone meets again outside the failed communicator; the transport is then dropped
    // without close() (its destructor must not block on the silent peer).
    MPI_Barrier(MPI_COMM_WORLD);
  }
}
