// Device rows for the in-server library: staging from cudaMalloc, local copies on the
// library's own stream (ordered after the caller's stream by an event), copies into place
// batched on the caller's stream. NCCL builds only (device_memory_stub.cpp otherwise).
#include <fmt/format.h>

#include <cstring>
#include <optional>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/exchange/device_copier.hpp"
#include "eplb/runtime/batched_copy.hpp"
#include "eplb/runtime/cuda.hpp"
#include "eplb/runtime/deadline.hpp"
#include "eplb/runtime/row_hash.hpp"
#include "row_memory.hpp"

namespace eplb::capi {
namespace {

class DeviceMemory final : public RowMemory {
 public:
  DeviceMemory(int device, std::chrono::milliseconds timeout) : device_(device), timeout_(timeout) {
    make_current();  // the stream and events below belong to the tensors' device
    stream_.emplace(runtime::Stream::with_priority(1));
    caller_done_.emplace();
    placed_.emplace();
    hashed_.emplace();
    copier_.emplace(stream_->get(), runtime::BatchedCopy::max_blocks(), timeout_);
  }
  std::byte* allocate_staging(size_t bytes) override {
    make_current();
    buffers_.emplace_back(bytes);
    return buffers_.back().data();
  }
  void make_current() override { EPLB_CUDA_CHECK(cudaSetDevice(device_)); }
  void before_exchange(void* caller_stream) override {
    make_current();
    caller_done_->record(static_cast<cudaStream_t>(caller_stream));
    wait(*caller_done_, "the caller's stream");
    if (placed_pending_) {
      wait(*placed_, "the last layer's copies into place");
      placed_pending_ = false;
    }
  }
  exchange::Copier& copier() override { return *copier_; }
  void place(const std::vector<RowCopy>& copies, void* caller_stream, bool wait_done) override {
    make_current();
    cudaStream_t stream = wait_done ? stream_->get() : static_cast<cudaStream_t>(caller_stream);
    runtime::BatchedCopy batch;
    for (const auto& c : copies) batch.add(c.dst, c.src, c.bytes);
    if (!batch.empty()) batch.flush(stream);
    placed_->record(stream);
    placed_pending_ = true;
    if (wait_done) {
      wait(*placed_, "the copies into place");
      placed_pending_ = false;
    }
  }
  std::vector<uint64_t> hash(const std::vector<ConstRow>& rows) override {
    make_current();
    std::vector<uint64_t> out(rows.size());
    if (rows.empty()) return out;
    const size_t bytes = rows.size() * sizeof(uint64_t);
    if (hash_device_.size() < bytes) {
      hash_device_ = runtime::DeviceBuffer(bytes);
      hash_host_ = runtime::PinnedBuffer(bytes);
    }
    std::vector<runtime::RowRef> refs;
    refs.reserve(rows.size());
    for (const auto& r : rows) refs.push_back({r.data, r.bytes});
    auto* device_sums = reinterpret_cast<uint64_t*>(hash_device_.data());
    runtime::hash_rows(refs.data(), refs.size(), device_sums, stream_->get());
    EPLB_CUDA_CHECK(cudaMemcpyAsync(hash_host_.data(), device_sums, bytes, cudaMemcpyDeviceToHost,
                                    stream_->get()));
    hashed_->record(stream_->get());
    wait(*hashed_, "the row checksums");
    std::memcpy(out.data(), hash_host_.data(), bytes);
    return out;
  }
  void flip_byte(std::byte* p) override {
    make_current();
    unsigned char b = 0;
    EPLB_CUDA_CHECK(cudaMemcpy(&b, p, 1, cudaMemcpyDeviceToHost));
    b ^= 1;
    EPLB_CUDA_CHECK(cudaMemcpy(p, &b, 1, cudaMemcpyHostToDevice));
  }
  bool device() const override { return true; }

 private:
  void wait(const runtime::Event& event, const char* what) const {
    const runtime::Deadline deadline(timeout_);
    if (!runtime::poll_until([&] { return event.done(); }, deadline)) {
      throw core::Error(core::ErrorKind::kComm,
                        fmt::format("waiting for {} on GPU {} timed out after {}", what, device_,
                                    deadline.timeout_text()));
    }
  }

  int device_;
  std::chrono::milliseconds timeout_;
  std::optional<runtime::Stream> stream_;
  std::optional<runtime::Event> caller_done_;
  std::optional<runtime::Event> placed_;
  std::optional<runtime::Event> hashed_;
  runtime::DeviceBuffer hash_device_;
  runtime::PinnedBuffer hash_host_;
  bool placed_pending_ = false;
  std::optional<exchange::DeviceCopier> copier_;
  std::vector<runtime::DeviceBuffer> buffers_;
};

}  // namespace

std::unique_ptr<RowMemory> make_device_memory(int device, std::chrono::milliseconds timeout) {
  return std::make_unique<DeviceMemory>(device, timeout);
}

int device_of(const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();  // not CUDA memory at all: clear the sticky-free error
    return -1;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged
             ? attributes.device
             : -1;
}

}  // namespace eplb::capi
