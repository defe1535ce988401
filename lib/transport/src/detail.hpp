// Helpers shared by the transport backends (not part of the public interface).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/transport/transport.hpp"

namespace eplb::transport::detail {

// Walks the byte stream of one Transfer (its segments concatenated) front to back, so that
// cutting it into consecutive chunks costs O(segments + chunks), not their product.
class SegmentCursor {
 public:
  explicit SegmentCursor(std::span<const Segment> segments) : segments_(segments) {}

  // Calls fn(std::byte* data, size_t bytes) for each contiguous piece of the next
  // `bytes` bytes of the stream, in order. The caller never asks past the end.
  template <typename Fn>
  void take(size_t bytes, Fn&& fn) {
    while (bytes > 0) {
      const Segment& seg = segments_[seg_idx_];
      size_t n = std::min(bytes, seg.bytes - offset_);
      if (n > 0) fn(seg.data + offset_, n);
      bytes -= n;
      offset_ += n;
      if (offset_ == seg.bytes) {
        ++seg_idx_;
        offset_ = 0;
      }
    }
  }

  // Index of the segment holding the next byte (segments.size() at the end).
  size_t current_index() const;

 private:
  std::span<const Segment> segments_;
  size_t seg_idx_ = 0;
  size_t offset_ = 0;
};

// How a pipeline cuts one byte stream of `total` bytes into pieces of at most `piece_cap`
// bytes, one per round; both ends of a pair compute it from the same arguments and so cut
// the stream identically. Streams ramp up and back down at the end (piece_cap/8, /4, /2,
// piece_cap..., /2, /4, /8; without ramp pieces under `min_ramp`, and a stream shorter
// than twice the ramp drops its top steps), so the first gather and the last scatter,
// which nothing overlaps, are short. Every piece but the last is a multiple of `align`
// (which divides `piece_cap`), so each starts aligned in the stream.
std::vector<size_t> piece_sizes(size_t total, size_t piece_cap, size_t align, size_t min_ramp = 0);

// Throws core::Error(kInternal) if a transfer names an invalid peer (out of range or the
// caller), a peer twice in one list, or a segment with bytes but no memory.
void validate_transfers(std::span<const Transfer> sends, std::span<const Transfer> recvs, int rank,
                        int size, std::string_view backend);

// "1, 3, 7"
std::string join_ints(const std::vector<int>& values);

}  // namespace eplb::transport::detail
