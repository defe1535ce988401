#include "file_hash_fold.hpp"

#include <algorithm>
#include <numeric>

#include "eplb/core/error.hpp"
#include "xxh3.hpp"

namespace eplb::io::detail {

struct FileHashFold::State {
  Xxh3Stream file;
  Xxh3Stream gaps;
  std::vector<std::byte> buf;
};

namespace {
constexpr size_t kGapChunk = size_t{1} << 20;
}

FileHashFold::FileHashFold(std::vector<Region> regions, ReadFile read, size_t keep_bytes)
    : read_(std::move(read)), keep_bytes_(keep_bytes), state_(std::make_unique<State>()) {
  state_->buf.resize(kGapChunk);
  std::vector<size_t> order(regions.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return regions[a].offset < regions[b].offset; });
  sorted_of_.resize(regions.size());
  for (size_t i = 0; i < order.size(); ++i) {
    regions_.push_back(regions[order[i]]);
    sorted_of_[order[i]] = i;
    EPLB_ASSERT(i == 0 || regions_[i - 1].offset + regions_[i - 1].bytes <= regions_[i].offset);
  }
}

FileHashFold::~FileHashFold() = default;

void FileHashFold::will_hold(uint64_t offset, std::span<const std::byte> bytes) {
  EPLB_ASSERT(offset >= cursor_);
  for (size_t i = 0; i < bytes.size(); ++i) final_bytes_[offset + i] = bytes[i];
}

void FileHashFold::feed_gap(uint64_t end) {
  if (end <= cursor_) return;
  gaps_.push_back({cursor_, end - cursor_});
  while (cursor_ < end) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(state_->buf.size(), end - cursor_));
    std::span<std::byte> chunk(state_->buf.data(), n);
    read_(cursor_, chunk);
    // Bytes known to change before the file is complete are hashed as they will be.
    for (const auto& [at, value] : final_bytes_) {
      if (at >= cursor_ && at < cursor_ + n) chunk[static_cast<size_t>(at - cursor_)] = value;
    }
    state_->file.update(chunk.data(), n);
    state_->gaps.update(chunk.data(), n);
    cursor_ += n;
  }
}

void FileHashFold::advance() {
  for (auto it = kept_.find(next_); it != kept_.end(); it = kept_.find(next_)) {
    feed_gap(regions_[next_].offset);
    state_->file.update(it->second.data(), it->second.size());
    cursor_ += it->second.size();
    kept_.erase(it);
    ++next_;
  }
}

void FileHashFold::written(size_t region_idx, std::span<const std::byte> bytes) {
  if (failed_) return;
  const size_t idx = sorted_of_.at(region_idx);
  EPLB_ASSERT(bytes.size() == regions_[idx].bytes && idx >= next_ && !kept_.contains(idx));
  advance();
  if (idx == next_) {
    feed_gap(regions_[idx].offset);
    state_->file.update(bytes.data(), bytes.size());
    cursor_ += bytes.size();
    ++next_;
    advance();
  } else if (bytes.size() <= keep_bytes_) {
    kept_.emplace(idx, std::vector<std::byte>(bytes.begin(), bytes.end()));
  } else {
    failed_ = true;  // a large region ahead of the cursor: not worth holding
    kept_.clear();
  }
}

std::optional<uint64_t> FileHashFold::finish(uint64_t file_size) {
  if (failed_) return std::nullopt;
  advance();
  if (next_ != regions_.size() || cursor_ > file_size) {
    failed_ = true;  // a region never written, or the file shorter than its regions
    return std::nullopt;
  }
  feed_gap(file_size);
  // Every gap fed before the file was complete must still hold the bytes that were hashed.
  Xxh3Stream again;
  for (const Region& gap : gaps_) {
    for (uint64_t at = gap.offset; at < gap.offset + gap.bytes;) {
      const auto n =
          static_cast<size_t>(std::min<uint64_t>(state_->buf.size(), gap.offset + gap.bytes - at));
      std::span<std::byte> chunk(state_->buf.data(), n);
      read_(at, chunk);
      again.update(chunk.data(), n);
      at += n;
    }
  }
  if (again.digest() != state_->gaps.digest()) {
    failed_ = true;
    return std::nullopt;
  }
  return state_->file.digest();
}

}  // namespace eplb::io::detail
