// Dataset addresses of a shard, for updates in place (eplb/io/shard_layout.hpp).
#include "eplb/io/shard_layout.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "eplb/core/to_size.hpp"
#include "eplb/fs/direct_io.hpp"
#include "eplb/fs/transfer.hpp"
#include "h5.hpp"
#include "shard_format.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;
using h5::Handle;

// The dataset's offset (h5::contiguous_offset, the one test of "rows can be rewritten with
// pwrite"), or kInput naming it.
uint64_t dataset_offset(hid_t group, const std::string& name, uint64_t bytes,
                        const std::string& where) {
  Handle dset = EPLB_H5_OWN(H5Dopen2(group, name.c_str(), H5P_DEFAULT), kDataset);
  const std::optional<uint64_t> offset = h5::contiguous_offset(dset.get(), bytes);
  if (!offset) {
    throw Error(ErrorKind::kInput, where + "dataset '" + name +
                                       "' is not contiguous and allocated: it cannot be "
                                       "updated in place");
  }
  return *offset;
}

}  // namespace

ShardLayout read_shard_layout(const std::filesystem::path& path, const ShardInfo& info) {
  h5::ensure_ready();
  const std::string where = "'" + path.string() + "': ";
  ShardLayout layout;
  const auto num_slots = static_cast<uint64_t>(core::to_size(info.num_slots_per_rank));
  {
    Handle fapl = EPLB_H5_OWN(H5Pcreate(H5P_FILE_ACCESS), kPropList);
    EPLB_H5(H5Pset_file_locking(fapl.get(), false, true));
    EPLB_H5(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG));
    const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (id < 0) {
      throw Error(ErrorKind::kIo,
                  "cannot open shard '" + path.string() + "': " + h5::take_error_stack());
    }
    Handle file(id, h5::Kind::kFile);
    for (int32_t layer = 0; layer < info.num_layers; ++layer) {
      const std::string name = detail::layer_group_name(layer);
      Handle group = EPLB_H5_OWN(H5Gopen2(file.get(), name.c_str(), H5P_DEFAULT), kGroup);
      const std::string at = where + name + ": ";
      LayerOffsets offsets;
      offsets.logical_ids =
          dataset_offset(group.get(), detail::kLogicalIds, num_slots * sizeof(int32_t), at);
      Handle sums = EPLB_H5_OWN(H5Gopen2(group.get(), detail::kChecksumGroup, H5P_DEFAULT), kGroup);
      for (const TensorSpec& spec : info.tensors) {
        offsets.tensors.push_back(
            dataset_offset(group.get(), spec.name, num_slots * spec.row_bytes(), at));
        offsets.checksums.push_back(
            dataset_offset(sums.get(), spec.name, num_slots * sizeof(uint64_t), at));
      }
      layout.layers.push_back(std::move(offsets));
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorKind::kIo, "cannot examine '" + path.string() + "': " + std::strerror(errno));
  }
  layout.file_size = static_cast<uint64_t>(st.st_size);
  // The id was written before any dataset was created, so its heap object lies in the
  // metadata before the first dataset's data.
  uint64_t first_data = layout.file_size;
  for (const auto& l : layout.layers) {
    first_data = std::min(first_data, l.logical_ids);
    for (uint64_t o : l.tensors) first_data = std::min(first_data, o);
    for (uint64_t o : l.checksums) first_data = std::min(first_data, o);
  }
  const std::string& id = info.checkpoint_id;
  if (id.size() != 32) {
    throw Error(ErrorKind::kInput,
                where +
                    "has no checkpoint id (written before ids existed): rebalance it once "
                    "without --in-place");
  }
  if (first_data > (uint64_t{64} << 20)) {
    throw Error(ErrorKind::kInput, where +
                                       "its metadata is not where this tool writes it: it "
                                       "cannot be updated in place");
  }
  std::string head(static_cast<size_t>(first_data), '\0');
  RowFile(path).read(0, std::as_writable_bytes(std::span(head.data(), head.size())));
  const size_t found = head.find(id);
  if (found == std::string::npos || head.find(id, found + 1) != std::string::npos) {
    throw Error(ErrorKind::kInput, where +
                                       "cannot locate the bytes of its checkpoint id (not a "
                                       "shard this tool wrote?): it cannot be updated in place");
  }
  layout.checkpoint_id_offset = found;
  return layout;
}

RowFile::RowFile(const std::filesystem::path& path) : path_(path) {
  fd_ = core::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd_.empty()) {
    throw Error(ErrorKind::kIo, "cannot open '" + path.string() + "': " + std::strerror(errno));
  }
  direct_fd_ = core::Fd(::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));  // may fail
}

void RowFile::read(uint64_t offset, std::span<std::byte> out) const {
  constexpr uint64_t kBlock = fs::kDirectAlign;
  const bool aligned = offset % kBlock == 0 && out.size() % kBlock == 0 &&
                       reinterpret_cast<uintptr_t>(out.data()) % kBlock == 0;
  if (aligned && !direct_fd_.empty() && !out.empty()) {
    // Past the page cache: the rows go to the caller's (reused) memory only. EINVAL on the
    // first call: this filesystem refuses O_DIRECT; read buffered from now on.
    const fs::Transfer t = fs::pread_full(direct_fd_.get(), out, offset);
    if (t.complete) return;
    if (t.error != EINVAL || t.done != 0) {
      throw Error(fs::failure_kind(t), "cannot read '" + path_.string() + "' at byte " +
                                           std::to_string(offset + t.done) + ": " +
                                           (t.error == 0 ? "end of file" : std::strerror(t.error)));
    }
    direct_fd_ = core::Fd();
  }
  const fs::Transfer t = fs::pread_full(fd_.get(), out, offset);
  if (t.complete) return;
  throw Error(fs::failure_kind(t), "cannot read '" + path_.string() + "' at byte " +
                                       std::to_string(offset + t.done) + ": " +
                                       (t.error == 0 ? "end of file" : std::strerror(t.error)));
}

void RowFile::prefetch(uint64_t offset, uint64_t bytes) const noexcept {
  ::posix_fadvise(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(bytes),
                  POSIX_FADV_WILLNEED);
}

}  // namespace eplb::io
