#include "eplb/transport/transport.hpp"

#include <fmt/format.h>

#include <set>

#include "detail.hpp"
#include "eplb/core/error.hpp"
#include "eplb/transport/nccl_transport.hpp"

namespace eplb::transport {

// Pure, so in every build (nccl_transport.hpp declares it).
int gpu_for(int node_rank, int num_visible) {
  return num_visible == 1 ? 0 : node_rank % num_visible;
}

size_t Transfer::bytes() const {
  size_t total = 0;
  for (const auto& seg : segments) total += seg.bytes;
  return total;
}

namespace detail {

size_t SegmentCursor::current_index() const {
  for (size_t i = seg_idx_; i < segments_.size(); ++i) {
    if (segments_[i].bytes > (i == seg_idx_ ? offset_ : 0)) return i;
  }
  return segments_.size();
}

std::vector<size_t> piece_sizes(size_t total, size_t piece_cap, size_t align, size_t min_ramp) {
  if (total == 0) return {};
  const size_t body = total / align * align;  // the unaligned tail joins the last piece
  std::vector<size_t> ramp;  // piece_cap/8, piece_cap/4, piece_cap/2 (where aligned)
  for (size_t s = piece_cap / 8 / align * align; s >= align && s < piece_cap; s *= 2) {
    if (s >= min_ramp) ramp.push_back(s);
  }
  size_t ramp_bytes = 0;
  for (size_t s : ramp) ramp_bytes += s;
  while (!ramp.empty() && 2 * ramp_bytes > body) {  // a shorter stream ramps less high
    ramp_bytes -= ramp.back();
    ramp.pop_back();
  }
  std::vector<size_t> pieces = ramp;
  // The middle in equal pieces of at most piece_cap: no short piece left over.
  const size_t middle = body - 2 * ramp_bytes;
  if (middle > 0) {
    const size_t n = (middle + piece_cap - 1) / piece_cap;
    const size_t piece = ((middle + n - 1) / n + align - 1) / align * align;
    for (size_t left = middle; left > 0; left -= std::min(piece, left)) {
      pieces.push_back(std::min(piece, left));
    }
  }
  pieces.insert(pieces.end(), ramp.rbegin(), ramp.rend());
  const size_t tail = total - body;
  if (tail > 0) {
    if (!pieces.empty() && pieces.back() + tail <= piece_cap) {
      pieces.back() += tail;
    } else {
      pieces.push_back(tail);
    }
  }
  return pieces;
}

namespace {
void validate_list(std::span<const Transfer> transfers, const char* direction, int rank, int size,
                   std::string_view backend) {
  std::set<int> seen;
  for (const auto& t : transfers) {
    auto fail = [&](const std::string& why) {
      throw core::Error(core::ErrorKind::kInternal,
                        fmt::format("internal error: {} exchange: {} transfer for peer {}: {}",
                                    backend, direction, t.peer, why));
    };
    if (t.peer < 0 || t.peer >= size) fail(fmt::format("peer out of range [0, {})", size));
    if (t.peer == rank) fail("peer is the calling process itself");
    if (!seen.insert(t.peer).second) fail("more than one transfer for this peer");
    for (const auto& seg : t.segments) {
      if (seg.bytes > 0 && seg.data == nullptr) fail("segment of non-zero size has no memory");
    }
  }
}
}  // namespace

void validate_transfers(std::span<const Transfer> sends, std::span<const Transfer> recvs, int rank,
                        int size, std::string_view backend) {
  validate_list(sends, "send", rank, size, backend);
  validate_list(recvs, "receive", rank, size, backend);
}

std::string join_ints(const std::vector<int>& values) {
  std::string out;
  for (int v : values) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

}  // namespace detail
}  // namespace eplb::transport
