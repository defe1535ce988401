// Internal to lib/io: RAII over the HDF5 C API, one error check, and the datatypes and
// attribute helpers shared by the shard reader and writer. Local; thread-compatible (the
// Debian HDF5 build is threadsafe; each thread silences its own error stack).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/unique_handle.hpp"
#include "eplb/io/tensor.hpp"

namespace eplb::io::h5 {

// Which H5?close a handle needs.
enum class Kind { kFile, kGroup, kDataset, kDataspace, kDatatype, kAttribute, kPropList };

// Move-only owner of one hid_t. The destructor closes quietly; close() reports failure,
// which matters for files: a failed H5Fclose means data may not have reached the disk.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, Kind kind) : handle_({id, kind}) {}

  hid_t get() const { return handle_.get().id; }
  bool valid() const { return get() >= 0; }
  void close();  // throws core::Error(kIo) with the HDF5 error stack
  void close_noexcept() noexcept { handle_.reset(); }

 private:
  struct Id {
    hid_t id = -1;
    Kind kind = Kind::kDatatype;
    bool operator==(const Id&) const = default;
  };
  struct Traits {
    static Id null() noexcept { return {}; }
    static void close(Id id) noexcept;  // the kind's H5?close; errors cleared, not reported
  };
  core::UniqueHandle<Id, Traits> handle_;
};

// Call before any other HDF5 call of a public entry point. Turns HDF5's automatic printing
// to stderr off for the calling thread, so failures reach the user once, through our
// exception, instead of as a stack dump on every rank; the first call also turns off
// HDF5's exit-time cleanup (see h5.cpp for why).
void ensure_ready();

// Takes (and clears) the calling thread's HDF5 error stack: "H5Fopen(): unable to open
// file (file signature not found); ...", outermost call first.
std::string take_error_stack();

// The current HDF5 failure, cleared: its root cause first (the system error deep in the
// stack, such as "No space left on device", or else HDF5's innermost complaint), the whole
// stack appended only at log level kDetail (-v).
struct Failure {
  std::string text;
  bool system_error = false;  // a system call failed: I/O, not content
};
Failure take_failure();

// Throws core::Error: "<root cause> (HDF5 H5Dread, shard.cpp:120)", kIo when a system call
// failed, kInput otherwise (HDF5 refusing what a file holds: corrupt content).
[[noreturn]] void fail(const char* call, const char* file, int line);

template <typename T>
T check(T result, const char* call, const char* file, int line) {
  if (result < 0) fail(call, file, line);
  return result;
}

// The one check for HDF5 C calls: a negative hid_t/herr_t/htri_t throws with the call,
// file, line and walked error stack.
#define EPLB_H5(call) ::eplb::io::h5::check((call), #call, __FILE__, __LINE__)

// Owning wrappers for calls that return a new id.
inline Handle own(hid_t id, Kind kind, const char* call, const char* file, int line) {
  return Handle(check(id, call, file, line), kind);
}
#define EPLB_H5_OWN(call, kind) \
  ::eplb::io::h5::own((call), ::eplb::io::h5::Kind::kind, #call, __FILE__, __LINE__)

// The file datatype of a dtype (docs/FORMAT.md): IEEE LE floats, bf16 as a custom 16-bit
// float, fp8 as little-endian uint8. Data is always read and written with this type as the
// memory type, so HDF5 never converts: bytes in are bytes out.
Handle make_dtype(DType dtype);
// "bf16", "int32", ... for a known type; otherwise a short description of `type`.
std::string describe_type(hid_t type);

enum class ObjType { kMissing, kGroup, kDataset, kOther };
// What `name` (a direct child of `loc`) is; a dangling link counts as kOther.
ObjType object_type(hid_t loc, const std::string& name);
std::vector<hsize_t> dataset_dims(hid_t dataset);
// Where the `bytes` bytes of a dataset lie in the file, when they are one contiguous,
// allocated, unfiltered range inside it (what this tool writes: docs/FORMAT.md), so they
// can be read and written with pread/pwrite; nullopt otherwise (chunked, compact,
// external, not allocated, or a size that is not `bytes`): use H5Dread/H5Dwrite.
// NOTE: the one place a dataset's offset is found: the writer, ShardReader (its raw reads
// and tensor_offset) and read_shard_layout (updates in place) all ask it.
std::optional<uint64_t> contiguous_offset(hid_t dataset, uint64_t bytes);

// Scalar attributes. Strings are written as variable-length UTF-8 (what h5py writes);
// both variable and fixed-length strings are read. Readers return nullopt when the
// attribute is absent and throw core::Error(kInput) when it has the wrong class.
void write_attr(hid_t obj, const char* name, std::string_view value);
void write_attr(hid_t obj, const char* name, int32_t value);
std::optional<std::string> read_string_attr(hid_t obj, const char* name);
std::optional<int64_t> read_int_attr(hid_t obj, const char* name);

}  // namespace eplb::io::h5
