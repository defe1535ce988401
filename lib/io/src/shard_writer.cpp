// ShardWriter: creates one EP rank's HDF5 shard (docs/FORMAT.md).
//
// Every group and dataset is created, and its space allocated, in the constructor in one
// fixed order, and HDF5's object timestamps are off: the file's bytes then depend only on
// its contents, not on the order layers are written in or on the clock ("same inputs, same
// output bytes", and a manifest checksum that reproduces).
#include <filesystem>

#include "eplb/io/atomic_dir.hpp"
#include "eplb/io/shard.hpp"
#include "h5.hpp"
#include "shard_format.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;
using h5::Handle;

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

void create_dataset(hid_t group, const std::string& name, hid_t type,
                    const std::vector<hsize_t>& dims, hid_t dcpl, const char* dtype_attr) {
  Handle space = EPLB_H5_OWN(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                             kDataspace);
  Handle dset = EPLB_H5_OWN(
      H5Dcreate2(group, name.c_str(), type, space.get(), H5P_DEFAULT, dcpl, H5P_DEFAULT), kDataset);
  if (dtype_attr) h5::write_attr(dset.get(), detail::kDtypeAttr, std::string_view(dtype_attr));
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

  void create_file();
  void write_root_attrs();
  void create_layer(int32_t layer_idx, hid_t gcpl, hid_t dcpl);
};

void ShardWriter::Impl::create_file() {
  Handle fcpl = group_plist(H5P_FILE_CREATE);  // the root group's timestamps too
  Handle fapl = EPLB_H5_OWN(H5Pcreate(H5P_FILE_ACCESS), kPropList);
  EPLB_H5(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG));
  // One writer per file, in a staging directory nobody else uses: HDF5's flock() adds
  // nothing and fails on some parallel filesystems.
  EPLB_H5(H5Pset_file_locking(fapl.get(), false, true));
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    throw Error(ErrorKind::kIo, "cannot create shard " + quoted + ": the file already exists");
  }
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl.get(), fapl.get());
  if (id < 0) {
    throw Error(ErrorKind::kIo, "cannot create shard " + quoted + ": " + h5::take_error_stack());
  }
  file = Handle(id, h5::Kind::kFile);
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
  create_dataset(group.get(), detail::kLogicalIds, H5T_STD_I32LE, {num_slots}, dcpl, nullptr);
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    const TensorSpec& spec = info.tensors[t];
    std::vector<hsize_t> dims{num_slots};
    dims.insert(dims.end(), spec.shape.begin(), spec.shape.end());
    const std::string dtype(to_string(spec.dtype));
    create_dataset(group.get(), spec.name, dtypes[t].get(), dims, dcpl, dtype.c_str());
  }
  Handle sums = EPLB_H5_OWN(
      H5Gcreate2(group.get(), detail::kChecksumGroup, H5P_DEFAULT, gcpl, H5P_DEFAULT), kGroup);
  for (const TensorSpec& spec : info.tensors) {
    create_dataset(sums.get(), spec.name, H5T_STD_U64LE, {num_slots}, dcpl, nullptr);
  }
}

ShardWriter::ShardWriter(const std::filesystem::path& path, const ShardInfo& info)
    : impl_(std::make_unique<Impl>()) {
  h5::ensure_ready();
  check_info(info);
  impl_->path = path;
  impl_->quoted = "'" + path.string() + "'";
  impl_->info = info;
  impl_->written.assign(static_cast<size_t>(info.num_layers), false);
  impl_->create_file();
  try {
    for (const TensorSpec& spec : info.tensors) impl_->dtypes.push_back(h5::make_dtype(spec.dtype));
    impl_->write_root_attrs();
    Handle gcpl = group_plist(H5P_GROUP_CREATE);
    Handle dcpl = dataset_plist();
    for (int32_t layer = 0; layer < info.num_layers; ++layer) {
      impl_->create_layer(layer, gcpl.get(), dcpl.get());
    }
  } catch (const Error& e) {
    // Whatever HDF5 says while writing is an I/O failure, not corrupt input.
    throw detail::with_prefix(core::Error(ErrorKind::kIo, e.problems()),
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
  try {
    const std::string name = detail::layer_group_name(layer_idx);
    Handle group = EPLB_H5_OWN(H5Gopen2(impl_->file.get(), name.c_str(), H5P_DEFAULT), kGroup);
    write_dataset(group.get(), detail::kLogicalIds, H5T_STD_I32LE, logical_ids.data());
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      // Memory type == file type: HDF5 writes the caller's bytes unconverted.
      write_dataset(group.get(), info.tensors[t].name, impl_->dtypes[t].get(), rows[t].data());
    }
    Handle sums = EPLB_H5_OWN(H5Gopen2(group.get(), detail::kChecksumGroup, H5P_DEFAULT), kGroup);
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      write_dataset(sums.get(), info.tensors[t].name, H5T_STD_U64LE, checksums[t].data());
    }
  } catch (const Error& e) {
    impl_->failed = true;
    throw detail::with_prefix(
        core::Error(ErrorKind::kIo, e.problems()),
        "writing layer " + std::to_string(layer_idx) + " of " + impl_->quoted + ": ");
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
  } catch (const Error& e) {
    // Whatever HDF5 says while writing is an I/O failure, not corrupt input.
    throw detail::with_prefix(core::Error(ErrorKind::kIo, e.problems()),
                              "writing " + impl_->quoted + ": ");
  }
  impl_->closed = true;
  // HDF5 only write()s; the data is on disk once the file itself is fsynced.
  fsync_path(impl_->path);
}

}  // namespace eplb::io
