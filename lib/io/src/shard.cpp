// ShardReader: opens and validates one EP rank's HDF5 shard (docs/FORMAT.md).
#include "eplb/io/shard.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "eplb/fs/direct_io.hpp"
#include "eplb/fs/transfer.hpp"
#include "h5.hpp"
#include "shard_format.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;
using h5::Handle;

// Ids and checksums are read as stored (little-endian int32 / uint64, checked on open).
static_assert(std::endian::native == std::endian::little, "raw reads assume a little-endian host");

std::string dims_text(const std::vector<hsize_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? "," : "") + std::to_string(dims[i]);
  return out + "]";
}

// What a dataset must look like: its type, shape and (for tensors) its dtype attribute.
struct Expected {
  hid_t type;
  std::vector<hsize_t> dims;
  std::string type_name;
  std::string dtype_attr;  // empty: no dtype attribute required
};

// One problem per mismatch, "" when `name` in `group` is as expected.
std::string dataset_problem(hid_t group, const std::string& name, const std::string& shown,
                            const Expected& want) {
  const h5::ObjType type = h5::object_type(group, name);
  if (type == h5::ObjType::kMissing) return "dataset '" + shown + "' is missing";
  if (type != h5::ObjType::kDataset) return "'" + shown + "' is not a dataset";
  Handle dset = EPLB_H5_OWN(H5Dopen2(group, name.c_str(), H5P_DEFAULT), kDataset);
  const std::vector<hsize_t> dims = h5::dataset_dims(dset.get());
  if (dims != want.dims) {
    return "dataset '" + shown + "' has shape " + dims_text(dims) + ", expected " +
           dims_text(want.dims);
  }
  Handle stored = EPLB_H5_OWN(H5Dget_type(dset.get()), kDatatype);
  if (EPLB_H5(H5Tequal(stored.get(), want.type)) == 0) {
    return "dataset '" + shown + "' has type " + h5::describe_type(stored.get()) + ", expected " +
           want.type_name;
  }
  if (want.dtype_attr.empty()) return "";
  std::optional<std::string> attr;
  try {
    attr = h5::read_string_attr(dset.get(), detail::kDtypeAttr);
  } catch (const Error& e) {
    return "dataset '" + shown + "': " + e.problems().front();
  }
  if (!attr) return "dataset '" + shown + "' has no 'dtype' attribute";
  if (*attr != want.dtype_attr) {
    return "dataset '" + shown + "' has dtype attribute '" + *attr + "', expected '" +
           want.dtype_attr + "'";
  }
  return "";
}

// Reads a root attribute; one of the wrong kind (not an integer, not one string) is an
// error that names the file.
template <typename Read>
auto root_attr(const std::string& where, Read read) {
  try {
    return read();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kInput) throw;
    throw core::with_prefix(e, where);
  }
}

int32_t int_attr(hid_t file, const char* name, int64_t min_value, core::ProblemList& problems,
                 const std::string& where) {
  const std::optional<int64_t> value =
      root_attr(where, [&] { return h5::read_int_attr(file, name); });
  if (!value) {
    problems.add(where + "attribute '" + name + "' is missing");
    return 0;
  }
  if (*value < min_value || *value > std::numeric_limits<int32_t>::max()) {
    problems.add(where + "attribute '" + name + "' is " + std::to_string(*value) +
                 ", expected at least " + std::to_string(min_value));
    return 0;
  }
  return static_cast<int32_t>(*value);
}

void check_format(hid_t file, const std::string& where) {
  const std::optional<std::string> format =
      root_attr(where, [&] { return h5::read_string_attr(file, "format"); });
  if (format != std::string(detail::kShardFormat)) {
    throw Error(ErrorKind::kInput, where + "not an eplb checkpoint shard (attribute 'format' is " +
                                       (format ? "'" + *format + "'" : "missing") + ", expected '" +
                                       detail::kShardFormat + "')");
  }
  const std::optional<int64_t> version =
      root_attr(where, [&] { return h5::read_int_attr(file, "version"); });
  if (version != detail::kShardVersion) {
    throw Error(ErrorKind::kInput, where + "format version " +
                                       (version ? std::to_string(*version) : "(missing)") +
                                       " is not supported (this build reads version 1)");
  }
}

ShardInfo read_info(hid_t file, const std::string& where) {
  check_format(file, where);
  core::ProblemList problems;
  ShardInfo info;
  info.ep_size = int_attr(file, "ep_size", 1, problems, where);
  info.ep_rank = int_attr(file, "ep_rank", 0, problems, where);
  info.num_layers = int_attr(file, "num_layers", 0, problems, where);
  info.num_slots_per_rank = int_attr(file, "num_slots_per_rank", 1, problems, where);
  if (problems.empty() && info.ep_rank >= info.ep_size) {
    problems.add(where + "attribute 'ep_rank' is " + std::to_string(info.ep_rank) +
                 ", not below ep_size " + std::to_string(info.ep_size));
  }
  info.checkpoint_id =
      root_attr(where, [&] { return h5::read_string_attr(file, "checkpoint_id"); }).value_or("");
  const std::optional<std::string> spec =
      root_attr(where, [&] { return h5::read_string_attr(file, "tensors"); });
  if (!spec) problems.add(where + "attribute 'tensors' is missing");
  try {
    if (spec) info.tensors = parse_tensor_specs(*spec);
  } catch (const Error& e) {
    const std::string prefix = where + "attribute 'tensors': ";
    for (const std::string& p : e.problems()) problems.add(prefix + p);
  }
  problems.throw_if_any();
  return info;
}

}  // namespace

std::string shard_file_name(int32_t ep_rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank-%05d.h5", static_cast<int>(ep_rank));
  return buf;
}

uint64_t checkpoint_data_bytes(const std::vector<TensorSpec>& tensors, int32_t ep_size,
                               int32_t num_layers, int32_t num_slots_per_rank) {
  const uint64_t per_row =
      expert_bytes(tensors) + tensors.size() * sizeof(uint64_t) + sizeof(int32_t);
  return per_row * static_cast<uint64_t>(ep_size) * static_cast<uint64_t>(num_layers) *
         static_cast<uint64_t>(num_slots_per_rank);
}

fs::SpaceNeeded checkpoint_space(const std::vector<TensorSpec>& tensors, int32_t ep_size,
                                 int32_t num_layers, int32_t num_slots_per_rank) {
  return {checkpoint_data_bytes(tensors, ep_size, num_layers, num_slots_per_rank),
          static_cast<uint64_t>(std::max(ep_size, 0)) + 2};
}

struct ShardReader::Impl {
  std::filesystem::path path;
  std::string quoted;  // "'ckpt/rank-00001.h5'"
  Handle file;
  ShardInfo info;
  std::vector<Handle> dtypes;  // file type per tensor, also the memory type
  // Where each layer's datasets lie, when contiguous (read with pread on `raw`, outside
  // HDF5 and its lock); nullopt: read through HDF5 (chunked or compact datasets written
  // by other tools).
  struct Offsets {
    std::optional<uint64_t> ids;
    std::vector<std::optional<uint64_t>> tensors;
    std::vector<std::optional<uint64_t>> sums;
  };
  // Contiguous datasets are read with pread on its buffered descriptor; rows with O_DIRECT
  // (4 KiB-aligned in files we wrote, H5Pset_alignment): no page cache, so no kernel copy
  // and no reclaim (fs::DirectFile: buffered where the filesystem refuses it).
  fs::DirectFile disk;
  std::atomic<uint64_t> bytes_direct{0};
  std::vector<Offsets> offsets;  // per layer

  Handle open_layer(int32_t layer_idx) const;
  void open_file();
  void validate_layer(int32_t layer_idx, core::ProblemList& problems);
  void raw_read(std::optional<uint64_t> offset, std::span<std::byte> out) const;
  void read_rows(uint64_t offset, std::span<std::byte> out);
  std::string where(int32_t layer_idx) const {
    return quoted + " layer " + std::to_string(layer_idx) + ": ";
  }
};

void ShardReader::Impl::open_file() {
  // A plain open() first: its errno says "No such file" or "Permission denied" plainly.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorKind::kIo, "cannot open shard " + quoted + ": " + std::strerror(errno));
  }
  disk = fs::DirectFile(core::Fd(fd), path, O_RDONLY);
  Handle fapl = EPLB_H5_OWN(H5Pcreate(H5P_FILE_ACCESS), kPropList);
  // Read-only: HDF5's flock() adds nothing for us and fails on some parallel filesystems.
  EPLB_H5(H5Pset_file_locking(fapl.get(), false, true));
  EPLB_H5(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG));
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0) {
    // The file opened and read fine above: HDF5 refusing it means corrupt content.
    const h5::Failure failure = h5::take_failure();
    throw Error(failure.system_error ? ErrorKind::kIo : ErrorKind::kInput,
                "cannot open shard " + quoted + " as HDF5 (corrupt or not HDF5): " + failure.text);
  }
  file = Handle(id, h5::Kind::kFile);
}

Handle ShardReader::Impl::open_layer(int32_t layer_idx) const {
  EPLB_ASSERT(layer_idx >= 0 && layer_idx < info.num_layers);
  const std::string name = detail::layer_group_name(layer_idx);
  return EPLB_H5_OWN(H5Gopen2(file.get(), name.c_str(), H5P_DEFAULT), kGroup);
}

// The dataset's offset when it is contiguous and as large as expected; nullopt otherwise
// (HDF5 then reads it, and reports whatever is wrong with it).
std::optional<uint64_t> offset_of(hid_t group, const std::string& name, uint64_t bytes) {
  try {
    Handle dset = EPLB_H5_OWN(H5Dopen2(group, name.c_str(), H5P_DEFAULT), kDataset);
    return h5::contiguous_offset(dset.get(), bytes);
  } catch (const Error&) {
    return std::nullopt;
  }
}

void ShardReader::Impl::validate_layer(int32_t layer_idx, core::ProblemList& problems) {
  const std::string group_name = detail::layer_group_name(layer_idx);
  if (h5::object_type(file.get(), group_name) != h5::ObjType::kGroup) {
    problems.add(where(layer_idx) + "group '" + group_name + "' is missing");
    return;
  }
  const hsize_t num_slots = static_cast<hsize_t>(info.num_slots_per_rank);
  Handle group = open_layer(layer_idx);
  const auto add = [&](const std::string& problem) {
    if (!problem.empty()) problems.add(where(layer_idx) + problem);
  };
  Offsets& where_raw = offsets[static_cast<size_t>(layer_idx)];
  where_raw.tensors.assign(info.tensors.size(), std::nullopt);
  where_raw.sums.assign(info.tensors.size(), std::nullopt);
  const size_t before = problems.size();
  add(dataset_problem(group.get(), detail::kLogicalIds, detail::kLogicalIds,
                      {H5T_STD_I32LE, {num_slots}, "int32", ""}));
  if (problems.size() == before) {
    where_raw.ids = offset_of(group.get(), detail::kLogicalIds, num_slots * sizeof(int32_t));
  }
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    const TensorSpec& spec = info.tensors[t];
    std::vector<hsize_t> dims{num_slots};
    dims.insert(dims.end(), spec.shape.begin(), spec.shape.end());
    const std::string dtype(to_string(spec.dtype));
    // "bf16", or the HDF5 type and the dtype it carries: "uint8 (dtype fp8_e4m3)".
    std::string type_name = h5::describe_type(dtypes[t].get());
    if (type_name != dtype) type_name += " (dtype " + dtype + ")";
    const size_t tensor_before = problems.size();
    add(dataset_problem(group.get(), spec.name, spec.name,
                        {dtypes[t].get(), dims, type_name, dtype}));
    if (problems.size() == tensor_before) {
      where_raw.tensors[t] = offset_of(group.get(), spec.name, num_slots * spec.row_bytes());
    }
  }
  if (h5::object_type(group.get(), detail::kChecksumGroup) != h5::ObjType::kGroup) {
    add(std::string("group '") + detail::kChecksumGroup + "' is missing");
    return;
  }
  Handle sums = EPLB_H5_OWN(H5Gopen2(group.get(), detail::kChecksumGroup, H5P_DEFAULT), kGroup);
  for (size_t t = 0; t < info.tensors.size(); ++t) {
    const TensorSpec& spec = info.tensors[t];
    const size_t sum_before = problems.size();
    add(dataset_problem(sums.get(), spec.name,
                        std::string(detail::kChecksumGroup) + "/" + spec.name,
                        {H5T_STD_U64LE, {num_slots}, "uint64", ""}));
    if (problems.size() == sum_before) {
      where_raw.sums[t] = offset_of(sums.get(), spec.name, num_slots * sizeof(uint64_t));
    }
  }
}

// The aligned front of the rows with O_DIRECT when the dataset starts on a 4 KiB boundary
// of the file and `out` on one of memory; the rest (a tail under 4 KiB, or everything
// where alignment or the filesystem does not allow it) buffered.
void ShardReader::Impl::read_rows(uint64_t offset, std::span<std::byte> out) {
  bytes_direct.fetch_add(disk.read(offset, out), std::memory_order_relaxed);
}

void ShardReader::Impl::raw_read(std::optional<uint64_t> offset, std::span<std::byte> out) const {
  EPLB_ASSERT(offset.has_value());
  fs::pread_exact(disk.fd(), out, *offset);
}

ShardReader::ShardReader(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
  h5::ensure_ready();
  impl_->path = path;
  impl_->quoted = core::quoted(path);
  impl_->open_file();
  try {
    impl_->info = read_info(impl_->file.get(), impl_->quoted + ": ");
    for (const TensorSpec& spec : impl_->info.tensors) {
      impl_->dtypes.push_back(h5::make_dtype(spec.dtype));
    }
    core::ProblemList problems;
    impl_->offsets.resize(static_cast<size_t>(impl_->info.num_layers));
    for (int32_t layer = 0; layer < impl_->info.num_layers; ++layer) {
      impl_->validate_layer(layer, problems);
    }
    problems.throw_if_any();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kIo) throw;
    throw core::with_prefix(e, "reading " + impl_->quoted + ": ");
  }
}

ShardReader::~ShardReader() = default;
ShardReader::ShardReader(ShardReader&&) noexcept = default;
ShardReader& ShardReader::operator=(ShardReader&&) noexcept = default;

const ShardInfo& ShardReader::info() const { return impl_->info; }
const std::filesystem::path& ShardReader::path() const { return impl_->path; }

std::vector<int32_t> ShardReader::read_logical_ids(int32_t layer_idx) const {
  h5::ensure_ready();
  try {
    std::vector<int32_t> ids(static_cast<size_t>(impl_->info.num_slots_per_rank));
    const auto& offset = impl_->offsets.at(static_cast<size_t>(layer_idx)).ids;
    if (offset) {
      impl_->raw_read(offset, std::as_writable_bytes(std::span(ids)));
      return ids;
    }
    Handle group = impl_->open_layer(layer_idx);
    Handle dset = EPLB_H5_OWN(H5Dopen2(group.get(), detail::kLogicalIds, H5P_DEFAULT), kDataset);
    EPLB_H5(H5Dread(dset.get(), H5T_STD_I32LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data()));
    return ids;
  } catch (const Error& e) {
    throw core::with_prefix(e, impl_->where(layer_idx));
  }
}

std::vector<uint64_t> ShardReader::read_checksums(int32_t layer_idx, size_t tensor_idx) const {
  h5::ensure_ready();
  EPLB_ASSERT(tensor_idx < impl_->info.tensors.size());
  try {
    std::vector<uint64_t> out(static_cast<size_t>(impl_->info.num_slots_per_rank));
    const auto& offset = impl_->offsets.at(static_cast<size_t>(layer_idx)).sums[tensor_idx];
    if (offset) {
      impl_->raw_read(offset, std::as_writable_bytes(std::span(out)));
      return out;
    }
    Handle group = impl_->open_layer(layer_idx);
    Handle sums = EPLB_H5_OWN(H5Gopen2(group.get(), detail::kChecksumGroup, H5P_DEFAULT), kGroup);
    const std::string& name = impl_->info.tensors[tensor_idx].name;
    Handle dset = EPLB_H5_OWN(H5Dopen2(sums.get(), name.c_str(), H5P_DEFAULT), kDataset);
    EPLB_H5(H5Dread(dset.get(), H5T_STD_U64LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()));
    return out;
  } catch (const Error& e) {
    throw core::with_prefix(e, impl_->where(layer_idx));
  }
}

void ShardReader::read_tensor(int32_t layer_idx, size_t tensor_idx,
                              std::span<std::byte> out) const {
  h5::ensure_ready();
  EPLB_ASSERT(tensor_idx < impl_->info.tensors.size());
  const TensorSpec& spec = impl_->info.tensors[tensor_idx];
  EPLB_ASSERT(out.size() == spec.row_bytes() * static_cast<size_t>(impl_->info.num_slots_per_rank));
  try {
    const auto& offset = impl_->offsets.at(static_cast<size_t>(layer_idx)).tensors[tensor_idx];
    if (offset) {
      impl_->read_rows(*offset, out);
      return;
    }
    Handle group = impl_->open_layer(layer_idx);
    Handle dset = EPLB_H5_OWN(H5Dopen2(group.get(), spec.name.c_str(), H5P_DEFAULT), kDataset);
    // Memory type == file type (checked on open): HDF5 copies the bytes unconverted.
    EPLB_H5(H5Dread(dset.get(), impl_->dtypes[tensor_idx].get(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    out.data()));
  } catch (const Error& e) {
    throw core::with_prefix(e, impl_->where(layer_idx) + "tensor '" + spec.name + "': ");
  }
}

uint64_t ShardReader::bytes_read_direct() const {
  return impl_->bytes_direct.load(std::memory_order_relaxed);
}

std::optional<uint64_t> ShardReader::tensor_offset(int32_t layer_idx, size_t tensor_idx) const {
  EPLB_ASSERT(layer_idx >= 0 && layer_idx < impl_->info.num_layers);
  EPLB_ASSERT(tensor_idx < impl_->info.tensors.size());
  // Found on open (validate_layer, by h5::contiguous_offset) for the datasets that passed.
  return impl_->offsets[static_cast<size_t>(layer_idx)].tensors[tensor_idx];
}

}  // namespace eplb::io
