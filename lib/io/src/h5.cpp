#include "h5.hpp"

#include <cstring>
#include <mutex>
#include <utility>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"

namespace eplb::io::h5 {
namespace {

using core::Error;
using core::ErrorKind;

herr_t close_id(hid_t id, Kind kind) {
  switch (kind) {
    case Kind::kFile:
      return H5Fclose(id);
    case Kind::kGroup:
      return H5Gclose(id);
    case Kind::kDataset:
      return H5Dclose(id);
    case Kind::kDataspace:
      return H5Sclose(id);
    case Kind::kDatatype:
      return H5Tclose(id);
    case Kind::kAttribute:
      return H5Aclose(id);
    case Kind::kPropList:
      return H5Pclose(id);
  }
  return -1;
}

const char* close_name(Kind kind) {
  switch (kind) {
    case Kind::kFile:
      return "H5Fclose";
    case Kind::kGroup:
      return "H5Gclose";
    case Kind::kDataset:
      return "H5Dclose";
    case Kind::kDataspace:
      return "H5Sclose";
    case Kind::kDatatype:
      return "H5Tclose";
    case Kind::kAttribute:
      return "H5Aclose";
    case Kind::kPropList:
      return "H5Pclose";
  }
  return "H5?close";
}

herr_t append_frame(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (!out->empty()) *out += "; ";
  *out += err->func_name ? err->func_name : "?";
  *out += "(): ";
  *out += err->desc ? err->desc : "";
  char minor[160] = {};
  if (H5Eget_msg(err->min_num, nullptr, minor, sizeof(minor) - 1) > 0) {
    *out += " (";
    *out += minor;
    *out += ")";
  }
  return 0;
}

const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

// A 16-bit float type cut down from IEEE f32. Order matters: the fields must first fit the
// old precision (set_fields), then the precision shrinks around them, then the size.
Handle make_half_type(size_t exp_size, size_t mant_size, size_t ebias) {
  Handle type = EPLB_H5_OWN(H5Tcopy(H5T_IEEE_F32LE), kDatatype);
  EPLB_H5(H5Tset_fields(type.get(), 15, mant_size, exp_size, 0, mant_size));
  EPLB_H5(H5Tset_precision(type.get(), 16));
  EPLB_H5(H5Tset_size(type.get(), 2));
  EPLB_H5(H5Tset_ebias(type.get(), ebias));
  return type;
}

Handle string_type(bool variable) {
  Handle type = EPLB_H5_OWN(H5Tcopy(H5T_C_S1), kDatatype);
  if (variable) EPLB_H5(H5Tset_size(type.get(), H5T_VARIABLE));
  EPLB_H5(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  return type;
}

void write_scalar_attr(hid_t obj, const char* name, hid_t type, const void* value) {
  Handle space = EPLB_H5_OWN(H5Screate(H5S_SCALAR), kDataspace);
  Handle attr =
      EPLB_H5_OWN(H5Acreate2(obj, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT), kAttribute);
  EPLB_H5(H5Awrite(attr.get(), type, value));
  attr.close();
}

Handle open_attr(hid_t obj, const char* name) {
  if (EPLB_H5(H5Aexists(obj, name)) == 0) return Handle();
  return EPLB_H5_OWN(H5Aopen(obj, name, H5P_DEFAULT), kAttribute);
}

}  // namespace

void Handle::close() {
  const Id owned = handle_.release();  // released even on failure: retrying cannot help
  if (owned.id < 0) return;
  ensure_ready();
  if (close_id(owned.id, owned.kind) < 0) fail(close_name(owned.kind), __FILE__, __LINE__);
}

void Handle::Traits::close(Id owned) noexcept {
  if (owned.id < 0) return;
  ensure_ready();
  close_id(owned.id, owned.kind);
  H5Eclear2(H5E_DEFAULT);
}

void ensure_ready() {
  // NOTE: HDF5 1.10 frees a file whose H5Fclose failed (say, on a full disk) but leaves its
  // id registered; its atexit handler then closes it again and crashes, turning a clean
  // I/O error exit into a segfault (HDFGroup/hdf5#2291, fixed in 1.14.1). Every writer
  // closes its file explicitly, so the library's exit-time cleanup is not needed: turn it
  // off, which only works before the library's first call.
  static std::once_flag once;
  std::call_once(once, [] { H5dont_atexit(); });
  // The automatic error handler is per thread in threadsafe builds.
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

namespace {

// The system error HDF5 reports deep in its stack ("..., errno = 28, error message = 'No
// space left on device', ..."), or "" when the failure was not a system call's.
std::string system_cause(const std::string& stack) {
  constexpr std::string_view kKey = "error message = '";
  const size_t at = stack.find(kKey);
  if (at == std::string::npos) return "";
  const size_t end = stack.find('\'', at + kKey.size());
  return stack.substr(at + kKey.size(), end == std::string::npos ? end : end - at - kKey.size());
}

// The innermost frame's description: what HDF5 itself found wrong.
std::string innermost(const std::string& stack) {
  const size_t at = stack.rfind("; ");
  return at == std::string::npos ? stack : stack.substr(at + 2);
}

}  // namespace

Failure take_failure() {
  Failure failure;
  hid_t stack = H5Eget_current_stack();  // copies and clears the default stack
  std::string text;
  if (stack >= 0) {
    H5Ewalk2(stack, H5E_WALK_DOWNWARD, append_frame, &text);
    H5Eclose_stack(stack);
  }
  if (text.empty()) text = "no HDF5 error stack";
  const std::string cause = system_cause(text);
  failure.system_error = !cause.empty();
  failure.text = failure.system_error ? cause : innermost(text);
  // The whole stack only with -v: the root cause comes first, once.
  if (core::log::level() >= core::log::Level::kDetail) failure.text += " [HDF5: " + text + "]";
  return failure;
}

std::string take_error_stack() { return take_failure().text; }

void fail(const char* call, const char* file, int line) {
  std::string name(call);
  name = name.substr(0, name.find('('));
  const Failure failure = take_failure();
  // A system error (disk full, I/O error) is an I/O failure; anything else HDF5 refuses
  // while reading what a shard says is corrupt content.
  throw Error(
      failure.system_error ? ErrorKind::kIo : ErrorKind::kInput,
      failure.text + " (HDF5 " + name + ", " + base_name(file) + ":" + std::to_string(line) + ")");
}

Handle make_dtype(DType dtype) {
  ensure_ready();
  switch (dtype) {
    case DType::kBf16:
      return make_half_type(8, 7, 127);
    case DType::kFp16:
      return make_half_type(5, 10, 15);
    case DType::kFp32:
      return EPLB_H5_OWN(H5Tcopy(H5T_IEEE_F32LE), kDatatype);
    case DType::kFp64:
      return EPLB_H5_OWN(H5Tcopy(H5T_IEEE_F64LE), kDatatype);
    case DType::kFp8E4m3:
    case DType::kFp8E5m2:
    case DType::kFp8E8m0:
    case DType::kBool:
    case DType::kU8:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_U8LE), kDatatype);
    case DType::kI8:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_I8LE), kDatatype);
    case DType::kU16:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_U16LE), kDatatype);
    case DType::kI16:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_I16LE), kDatatype);
    case DType::kU32:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_U32LE), kDatatype);
    case DType::kI32:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_I32LE), kDatatype);
    case DType::kU64:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_U64LE), kDatatype);
    case DType::kI64:
      return EPLB_H5_OWN(H5Tcopy(H5T_STD_I64LE), kDatatype);
  }
  throw Error(ErrorKind::kInternal, "make_dtype: unknown dtype");
}

std::string describe_type(hid_t type) {
  for (DType dtype : {DType::kBf16, DType::kFp16, DType::kFp32}) {
    if (H5Tequal(type, make_dtype(dtype).get()) > 0) return std::string(to_string(dtype));
  }
  if (H5Tequal(type, H5T_IEEE_F64LE) > 0) return "fp64";
  const std::pair<hid_t, const char*> integers[] = {
      {H5T_STD_U8LE, "uint8"},   {H5T_STD_I8LE, "int8"},    {H5T_STD_U16LE, "uint16"},
      {H5T_STD_I16LE, "int16"},  {H5T_STD_U32LE, "uint32"}, {H5T_STD_I32LE, "int32"},
      {H5T_STD_U64LE, "uint64"}, {H5T_STD_I64LE, "int64"}};
  for (const auto& [known, name] : integers) {
    if (H5Tequal(type, known) > 0) return name;
  }
  const H5T_class_t cls = H5Tget_class(type);
  const char* name = cls == H5T_INTEGER  ? "integer"
                     : cls == H5T_FLOAT  ? "float"
                     : cls == H5T_STRING ? "string"
                                         : "non-numeric";
  std::string out = std::to_string(H5Tget_size(type) * 8) + "-bit " + name;
  if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
    out += H5Tget_order(type) == H5T_ORDER_BE ? " (big-endian)" : "";
  }
  H5Eclear2(H5E_DEFAULT);
  return out;
}

ObjType object_type(hid_t loc, const std::string& name) {
  if (EPLB_H5(H5Lexists(loc, name.c_str(), H5P_DEFAULT)) == 0) return ObjType::kMissing;
  H5O_info_t info{};
  if (H5Oget_info_by_name2(loc, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return ObjType::kOther;
  }
  if (info.type == H5O_TYPE_GROUP) return ObjType::kGroup;
  if (info.type == H5O_TYPE_DATASET) return ObjType::kDataset;
  return ObjType::kOther;
}

std::vector<hsize_t> dataset_dims(hid_t dataset) {
  Handle space = EPLB_H5_OWN(H5Dget_space(dataset), kDataspace);
  const int rank = EPLB_H5(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  EPLB_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
  return dims;
}

std::optional<uint64_t> contiguous_offset(hid_t dataset, uint64_t bytes) {
  Handle dcpl = EPLB_H5_OWN(H5Dget_create_plist(dataset), kPropList);
  if (H5Pget_layout(dcpl.get()) != H5D_CONTIGUOUS) return std::nullopt;
  if (EPLB_H5(H5Pget_external_count(dcpl.get())) != 0) return std::nullopt;
  if (H5Dget_storage_size(dataset) != bytes) return std::nullopt;
  // The address is absolute (a user block included); HADDR_UNDEF until allocated.
  const haddr_t offset = H5Dget_offset(dataset);
  H5Eclear2(H5E_DEFAULT);  // H5Dget_offset leaves a stack when there is no address
  if (offset == HADDR_UNDEF) return std::nullopt;
  return static_cast<uint64_t>(offset);
}

void write_attr(hid_t obj, const char* name, std::string_view value) {
  Handle type = string_type(/*variable=*/true);
  const std::string text(value);
  const char* ptr = text.c_str();
  write_scalar_attr(obj, name, type.get(), &ptr);
}

void write_attr(hid_t obj, const char* name, int32_t value) {
  write_scalar_attr(obj, name, H5T_STD_I32LE, &value);
}

std::optional<std::string> read_string_attr(hid_t obj, const char* name) {
  Handle attr = open_attr(obj, name);
  if (!attr.valid()) return std::nullopt;
  Handle type = EPLB_H5_OWN(H5Aget_type(attr.get()), kDatatype);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw Error(ErrorKind::kInput, std::string("attribute '") + name + "' is not a string");
  }
  // One string: H5Aread writes every element, and the buffers below hold one.
  Handle space = EPLB_H5_OWN(H5Aget_space(attr.get()), kDataspace);
  if (EPLB_H5(H5Sget_simple_extent_npoints(space.get())) != 1) {
    throw Error(ErrorKind::kInput, std::string("attribute '") + name + "' is not one string");
  }
  if (EPLB_H5(H5Tis_variable_str(type.get())) > 0) {
    Handle mem = string_type(/*variable=*/true);
    char* ptr = nullptr;
    EPLB_H5(H5Aread(attr.get(), mem.get(), &ptr));
    std::string out = ptr ? ptr : "";
    H5free_memory(ptr);
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  std::string out(size, '\0');
  EPLB_H5(H5Aread(attr.get(), type.get(), out.data()));
  out.resize(out.find('\0') == std::string::npos ? size : out.find('\0'));
  return out;
}

std::optional<int64_t> read_int_attr(hid_t obj, const char* name) {
  Handle attr = open_attr(obj, name);
  if (!attr.valid()) return std::nullopt;
  Handle type = EPLB_H5_OWN(H5Aget_type(attr.get()), kDatatype);
  Handle space = EPLB_H5_OWN(H5Aget_space(attr.get()), kDataspace);
  if (H5Tget_class(type.get()) != H5T_INTEGER ||
      EPLB_H5(H5Sget_simple_extent_npoints(space.get())) != 1) {
    throw Error(ErrorKind::kInput, std::string("attribute '") + name + "' is not an integer");
  }
  int64_t value = 0;
  EPLB_H5(H5Aread(attr.get(), H5T_NATIVE_INT64, &value));
  return value;
}

}  // namespace eplb::io::h5
