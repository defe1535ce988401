#include "nccl_trace.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <string>

namespace eplb::transport::detail {

RoundTrace::RoundTrace(bool on, size_t num_rounds) : num_rounds_(on ? num_rounds : 0) {
  for (size_t i = 0; i < num_rounds_ * 6; ++i) events_.emplace_back(true);
}

void RoundTrace::mark(size_t round, Phase phase, bool end, cudaStream_t stream) {
  if (events_.empty()) return;
  events_[round * 6 + static_cast<size_t>(phase) * 2 + (end ? 1 : 0)].record(stream);
}

void RoundTrace::print(size_t piece_cap, double setup_ms, double flows_ms) const {
  if (events_.empty()) return;
  auto at = [&](size_t i) {
    float ms = 0;
    EPLB_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[0].get(), events_[i].get()));
    return ms;
  };
  std::string text = fmt::format(
      "trace: rank 0, {} rounds of at most {} bytes per peer, {:.3f} ms of host set-up ({:.3f} "
      "of it classifying segments), then ms since the first gather began\n",
      num_rounds_, piece_cap, setup_ms, flows_ms);
  for (size_t k = 0; k < num_rounds_; ++k) {
    const size_t e = k * 6;
    text += fmt::format(
        "trace: round {:3}  gather {:8.3f} {:8.3f}  send/recv {:8.3f} {:8.3f}  scatter {:8.3f} "
        "{:8.3f}\n",
        k, at(e), at(e + 1), at(e + 2), at(e + 3), at(e + 4), at(e + 5));
  }
  std::fputs(text.c_str(), stderr);
}

}  // namespace eplb::transport::detail
