// ShardWriter: creates one EP rank's HDF5 shard (docs/FORMAT.md).
//
// Every group and dataset is created, and its space allocated, in the constructor in one
// fixed order, and HDF5's object timestamps are off: the file's bytes then depend only on
// its contents, not on the order layers are written in or on the clock ("same inputs, same
// output bytes", and a manifest checksum that reproduces).
//
// Every dataset is contiguous and allocated at creation, so its offset is known: layers
// are written with pwrite on a descriptor of our own, outside HDF5 (no HDF5 lock held
// while the bytes move), and their write-back starts at once (sync_file_range), so that
// close()'s fdatasync finds little left to do. HDF5 writes only the metadata, at close.
//
// Disk speed without the page cache's CPU cost: every HDF5 object starts on a 4 KiB
// boundary (H5Pset_alignment; readers need not know), so the aligned body of a row
// block held in aligned memory goes out with O_DIRECT, its unaligned ends and the small
// datasets buffered. The data is then never in the page cache, so the manifest's
// whole-file xxh3 cannot be re-read cheaply: FileHashFold hashes the file in file order as
// the layers are written (the metadata is flushed once all datasets exist, and checked
// unchanged at close), falling back to reading the file (nullopt) when that fails.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "eplb/fs/direct_io.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/fs/transfer.hpp"
#include "eplb/io/shard.hpp"
#include "file_hash_fold.hpp"
#include "h5.hpp"
#include "shard_format.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;
using h5::Handle;

// Ids and checksums are written as the file stores them (little-endian int32 / uint64).
static_assert(std::endian::native == std::endian::little, "raw writes assume a little-endian host");

Handle dataset_plist() {
  Handle dcpl = EPLB_H5_OWN(H5Pcreate(H5P_DATASET_CREATE), kPropList);
  EPLB_H5(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS));
  EPLB_H5(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
  // Every byte is written by write_layer; filling first would write the file twice.
  EPLB_H5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
  EPLB_H5(H5Pset_obj_track_times(dcpl.get(), false));
  return dcpl;
}

Handle group_plist(hid_t cls) {
  Handle gcpl = EPLB_H5_OWN(H5Pcreate(cls), kPropList);
  EPLB_H5(H5Pset_obj_track_times(gcpl.get(), false));
  return gcpl;
}

// Creates the dataset and returns its offset in the file (nullopt if HDF5 gave it none:
// written through HDF5 then).
std::optional<uint64_t> create_dataset(hid_t group, const std::string& name, hid_t type,
                                       const std::vector<hsize_t>& dims, hid_t dcpl,
                                       const char* dtype_attr) {
  Handle space = EPLB_H5_OWN(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                             kDataspace);
  Handle dset = EPLB_H5_OWN(
      H5Dcreate2(group, name.c_str(), type, space.get(), H5P_DEFAULT, dcpl, H5P_DEFAULT), kDataset);
  if (dtype_attr) h5::write_attr(dset.get(), detail::kDtypeAttr, std::string_view(dtype_attr));
  uint64_t bytes = H5Tget_size(type);
  for (hsize_t d : dims) bytes *= d;
  return h5::contiguous_offset(dset.get(), bytes);
}

void write_dataset(hid_t group, const std::string& name, hid_t type, const void* data) {
  Handle dset = EPLB_H5_OWN(H5Dopen2(group, name.c_str(), H5P_DEFAULT), kDataset);
  EPLB_H5(H5Dwrite(dset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
}

void check_info(const ShardInfo& info) {
  EPLB_ASSERT(info.ep_size > 0 && info.ep_rank >= 0 && info.ep_rank < info.ep_size);
  EPLB_ASSERT(info.num_layers >= 0 && info.num_slots_per_rank > 0);
  EPLB_ASSERT(!info.tensors.empty());
}

}  // namespace

struct ShardWriter::Impl {
  std::filesystem::path path;
  std::string quoted;
  ShardInfo info;
  Handle file;
  std::vector<Handle> dtypes;
  std::vector<bool> written;  // per layer
  bool closed = false;
  bool failed = false;  // a write failed: the file cannot be completed
  // Where each layer's datasets lie (nullopt: through HDF5), and the descriptor they are
  // written with.
  struct Offsets {
    std::optional<uint64_t> ids;
    std::vector<std::optional<uint64_t>> tensors;
    std::vector<std::optional<uint64_t>> sums;
  };
  std::vector<Offsets> offsets;
  // O_RDWR: buffered writes and the fold's reads; O_DIRECT for aligned row blocks.
  fs::DirectFile disk;
  // The whole-file hash, in the order datasets lie in the file: region index of each
  // layer's ids, tensors and checksums (layer-major, as `offsets`).
  std::unique_ptr<detail::FileHashFold> fold;
  std::optional<uint64_t> file_xxh3;
  // The byte range of the last layer written, whose write-back the next layer waits for:
  // at most two layers of dirty pages per file, whatever the number of layers.
  uint64_t pending_begin = 0, pending_end = 0;

  void create_file();
  void start_fold();
  void put(std::span<const std::byte> bytes, uint64_t offset);
  void write_root_attrs();
  void create_layer(int32_t layer_idx, hid_t gcpl, hid_t dcpl);
  void write_through_hdf5(int32_t layer_idx, std::span<const int32_t> logical_ids,
                          std::span<const std::span<const std::byte>> rows,
                          std::span<const std::vector<uint64_t>> checksums);
};

void ShardWriter::Impl::create_file() {
  Handle fcpl = group_plist(H5P_FILE_CREATE);  // the root group's timestamps too
  Handle fapl = EPLB_H5_OWN(H5Pcreate(H5P_FILE_ACCESS), kPropList);
  EPLB_H5(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG));
  // One writer per file, in a staging directory nobody else uses: HDF5's flock() adds
  // nothing and fails on some parallel filesystems.
  EPLB_H5(H5Pset_file_locking(fapl.get(), false, true));
  // Every allocation 4 KiB-aligned (threshold 1 byte): large datasets for O_DIRECT, and
  // small ones too, so that HDF5 neither packs small datasets of several layers into one
  // block nor fills alignment gaps with later ones: datasets lie in the order they are
  // created (layer by layer), the order the hash fold takes them in. Costs up to 4 KiB of
  // padding per object (tens of KiB per layer).
  EPLB_H5(H5Pset_alignment(fapl.get(), 1, fs::kDirectAlign));
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    throw Error(ErrorKind::kIo, "cannot create shard " + quoted + ": the file already exists");
  }
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl.get(), fapl.get());
  if (id < 0) {
    throw Error(ErrorKind::kIo, "cannot create shard " + quoted + ": " + h5::take_error_stack());
  }
  file = Handle(id, h5::Kind::kFile);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorKind::kIo,
                "cannot open shard " + quoted + " for writing: " + std::strerror(errno));
  }
  // Refused O_DIRECT (EINVAL: tmpfs and some network filesystems): everything buffered.
  disk = fs::DirectFile(core::Fd(fd), path, O_WRONLY);
}

// After every dataset exists: HDF5's metadata goes to the file now, so the fold can read
// the bytes between datasets as it passes them.
void ShardWriter::Impl::start_fold() {
  std::vector<detail::FileHashFold::Region> regions;
  const auto num_slots = static_cast<uint64_t>(info.num_slots_per_rank);
  for (const Offsets& at : offsets) {
    if (!at.ids) return;
    regions.push_back({*at.ids, num_slots * sizeof(int32_t)});
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      if (!at.tensors[t] || !at.sums[t]) return;
      regions.push_back({*at.tensors[t], num_slots * info.tensors[t].row_bytes()});
      regions.push_back({*at.sums[t], num_slots * sizeof(uint64_t)});
    }
  }
  EPLB_H5(H5Fflush(file.get(), H5F_SCOPE_LOCAL));
  const int fd = disk.fd();
  fold = std::make_unique<detail::FileHashFold>(
      std::move(regions),
      [fd](uint64_t offset, std::span<std::byte> out) { fs::pread_exact(fd, out, offset); });
  // A version 0 or 1 superblock at byte 0 (HDF5's default) holds 4 bytes of file
  // consistency flags at byte 20, set while the file is open for writing, cleared at close.
  std::array<std::byte, 9> head{};
  fs::pread_exact(fd, head, 0);
  constexpr unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (std::memcmp(head.data(), kSignature, 8) == 0 && std::to_integer<int>(head[8]) <= 1) {
    const std::array<std::byte, 4> cleared{};
    fold->will_hold(20, cleared);
  }
}

// The aligned middle of `bytes` with O_DIRECT where possible, the rest buffered.
void ShardWriter::Impl::put(std::span<const std::byte> bytes, uint64_t offset) {
  disk.write(offset, bytes);
}

void ShardWriter::Impl::write_root_attrs() {
  const hid_t root = file.get();
  h5::write_attr(root, "format", std::string_view(detail::kShardFormat));
  h5::write_attr(root, "version", detail::kShardVersion);
  h5::write_attr(root, "ep_rank", info.ep_rank);
  h5::write_attr(root, "ep_size", info.ep_size);
  h5::write_attr(root, "num_layers", info.num_layers);
  h5::write_attr(root, "num_slots_per_rank", info.num_slots_per_rank);
  h5::write_attr(root, "tensors", std::string_view(to_string(info.tensors)));
  if (!info.checkpoint_id.empty()) {
    h5::write_attr(root, "checkpoint_id", std::string_view(info.checkpoint_id));
  }
}

void ShardWriter::Impl::create_layer(int32_t layer_idx, hid_t gcpl, hid_t dcpl) {
  const std::string name = detail::layer_group_name(layer_idx);
  Handle group =
      EPLB_H5_OWN(H5Gcreate2(file.get(), name.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT), kGroup);
  const hsize_t num_slots = static_cast<hsize_t>(info.num_slots_per_rank);
  Offsets& at = offsets[static_cast<size_t>(layer_idx)];
  at.ids =
      create_dataset(group.get(), detail::kLogicalIds, H5T_STD_I32LE, {num_slots}, dcpl, nullptr);
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    const TensorSpec& spec = info.tensors[t];
    std::vector<hsize_t> dims{num_slots};
    dims.insert(dims.end(), spec.shape.begin(), spec.shape.end());
    const std::string dtype(to_string(spec.dtype));
    at.tensors.push_back(
        create_dataset(group.get(), spec.name, dtypes[t].get(), dims, dcpl, dtype.c_str()));
  }
  Handle sums = EPLB_H5_OWN(
      H5Gcreate2(group.get(), detail::kChecksumGroup, H5P_DEFAULT, gcpl, H5P_DEFAULT), kGroup);
  for (const TensorSpec& spec : info.tensors) {
    at.sums.push_back(
        create_dataset(sums.get(), spec.name, H5T_STD_U64LE, {num_slots}, dcpl, nullptr));
  }
}

void ShardWriter::Impl::write_through_hdf5(int32_t layer_idx, std::span<const int32_t> logical_ids,
                                           std::span<const std::span<const std::byte>> rows,
                                           std::span<const std::vector<uint64_t>> checksums) {
  const std::string name = detail::layer_group_name(layer_idx);
  Handle group = EPLB_H5_OWN(H5Gopen2(file.get(), name.c_str(), H5P_DEFAULT), kGroup);
  write_dataset(group.get(), detail::kLogicalIds, H5T_STD_I32LE, logical_ids.data());
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    // Memory type == file type: HDF5 writes the caller's bytes unconverted.
    write_dataset(group.get(), info.tensors[t].name, dtypes[t].get(), rows[t].data());
  }
  Handle sums = EPLB_H5_OWN(H5Gopen2(group.get(), detail::kChecksumGroup, H5P_DEFAULT), kGroup);
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    write_dataset(sums.get(), info.tensors[t].name, H5T_STD_U64LE, checksums[t].data());
  }
}

ShardWriter::ShardWriter(const std::filesystem::path& path, const ShardInfo& info)
    : impl_(std::make_unique<Impl>()) {
  h5::ensure_ready();
  check_info(info);
  impl_->path = path;
  impl_->quoted = core::quoted(path);
  impl_->info = info;
  impl_->written.assign(static_cast<size_t>(info.num_layers), false);
  impl_->offsets.resize(static_cast<size_t>(info.num_layers));
  impl_->create_file();
  try {
    for (const TensorSpec& spec : info.tensors) impl_->dtypes.push_back(h5::make_dtype(spec.dtype));
    impl_->write_root_attrs();
    Handle gcpl = group_plist(H5P_GROUP_CREATE);
    Handle dcpl = dataset_plist();
    for (int32_t layer = 0; layer < info.num_layers; ++layer) {
      impl_->create_layer(layer, gcpl.get(), dcpl.get());
    }
    impl_->start_fold();
  } catch (const Error& e) {
    // Whatever HDF5 says while writing is an I/O failure, not corrupt input.
    throw core::with_prefix(core::Error(ErrorKind::kIo, e.problems()),
                            "writing " + impl_->quoted + ": ");
  }
}

ShardWriter::~ShardWriter() {
  // Without close() the file is incomplete anyway (it lives in staging); just release it.
  if (impl_) impl_->file.close_noexcept();
}

ShardWriter::ShardWriter(ShardWriter&&) noexcept = default;
ShardWriter& ShardWriter::operator=(ShardWriter&&) noexcept = default;

void ShardWriter::write_layer(int32_t layer_idx, std::span<const int32_t> logical_ids,
                              std::span<const std::span<const std::byte>> rows,
                              std::span<const std::vector<uint64_t>> checksums) {
  h5::ensure_ready();
  const ShardInfo& info = impl_->info;
  const size_t num_slots = static_cast<size_t>(info.num_slots_per_rank);
  EPLB_ASSERT(!impl_->closed && layer_idx >= 0 && layer_idx < info.num_layers);
  EPLB_ASSERT(!impl_->written[static_cast<size_t>(layer_idx)]);
  EPLB_ASSERT(logical_ids.size() == num_slots);
  EPLB_ASSERT(rows.size() == info.tensors.size() && checksums.size() == info.tensors.size());
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    EPLB_ASSERT(rows[t].size() == info.tensors[t].row_bytes() * num_slots);
    EPLB_ASSERT(checksums[t].size() == num_slots);
  }
  const auto& at = impl_->offsets[static_cast<size_t>(layer_idx)];
  bool raw = at.ids.has_value();
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    raw = raw && at.tensors[t].has_value() && at.sums[t].has_value();
  }
  std::string what;  // the dataset being written, for the message
  try {
    if (!raw) {
      h5::ensure_ready();
      impl_->write_through_hdf5(layer_idx, logical_ids, rows, checksums);
    } else {
      const int fd = impl_->disk.fd();
      uint64_t begin = UINT64_MAX, end = 0;
      // Region indices as start_fold() listed them: layer-major, ids then (tensor, sums).
      size_t region = static_cast<size_t>(layer_idx) * (1 + 2 * info.tensors.size());
      // The fold takes the layer's datasets in file order, once all are written.
      std::vector<std::pair<uint64_t, std::pair<size_t, std::span<const std::byte>>>> done;
      const auto put = [&](std::span<const std::byte> bytes, uint64_t offset) {
        impl_->put(bytes, offset);
        done.push_back({offset, {region++, bytes}});
        begin = std::min(begin, offset);
        end = std::max(end, offset + bytes.size());
      };
      what = std::string("dataset '") + detail::kLogicalIds + "': ";
      put(std::as_bytes(logical_ids), *at.ids);
      for (size_t t = 0; t < info.tensors.size(); ++t) {
        what = "tensor '" + info.tensors[t].name + "': ";
        put(rows[t], *at.tensors[t]);
        what = "checksums of tensor '" + info.tensors[t].name + "': ";
        put(std::as_bytes(std::span(checksums[t])), *at.sums[t]);
      }
      what = "hashing the file: ";
      std::sort(done.begin(), done.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [offset, piece] : done) {
        if (impl_->fold) impl_->fold->written(piece.first, piece.second);
      }
      // Start this layer's write-back now, and wait for the previous layer's: the disk
      // always has a layer to write, and close() only the last one to wait for.
      what = "";
      fs::start_writeback(fd, begin, end - begin, /*wait=*/false);
      fs::start_writeback(fd, impl_->pending_begin, impl_->pending_end - impl_->pending_begin,
                          /*wait=*/true);
      impl_->pending_begin = begin;
      impl_->pending_end = end;
    }
  } catch (const Error& e) {
    impl_->failed = true;
    throw core::with_prefix(
        core::Error(ErrorKind::kIo, e.problems()),
        "writing layer " + std::to_string(layer_idx) + " of " + impl_->quoted + ": " + what);
  }
  impl_->written[static_cast<size_t>(layer_idx)] = true;
}

void ShardWriter::close() {
  h5::ensure_ready();
  EPLB_ASSERT(!impl_->closed);
  if (impl_->failed) {
    throw Error(ErrorKind::kIo, "writing " + impl_->quoted + ": incomplete after a failed write");
  }
  std::string missing;
  for (size_t layer = 0; layer < impl_->written.size(); ++layer) {
    if (!impl_->written[layer]) missing += (missing.empty() ? "" : ", ") + std::to_string(layer);
  }
  if (!missing.empty()) {
    throw Error(ErrorKind::kInternal,
                "shard " + impl_->quoted + " closed before these layers were written: " + missing);
  }
  try {
    EPLB_H5(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL));
    impl_->file.close();
    // HDF5 and pwrite only write(); the data is on disk once the file is synced. Most of
    // it is already: every layer's write-back started when it was written.
    fs::sync_data(impl_->disk.fd(), impl_->path);
    if (impl_->fold) {
      struct stat st {};
      if (::fstat(impl_->disk.fd(), &st) != 0) {
        throw Error(ErrorKind::kIo, std::string("fstat: ") + std::strerror(errno));
      }
      impl_->file_xxh3 = impl_->fold->finish(static_cast<uint64_t>(st.st_size));
      impl_->fold.reset();
    }
    impl_->disk.close();
  } catch (const Error& e) {
    // Whatever HDF5 says while writing is an I/O failure, not corrupt input.
    throw core::with_prefix(core::Error(ErrorKind::kIo, e.problems()),
                            "writing " + impl_->quoted + ": ");
  }
  impl_->closed = true;
}

std::optional<uint64_t> ShardWriter::file_xxh3() const {
  EPLB_ASSERT(impl_->closed);
  return impl_->file_xxh3;
}

}  // namespace eplb::io
