// The safetensors file layer: strict header parsing, positioned reads of tensor bytes,
// Hugging Face model directories (index + shards), and writing files whose layout is fixed
// up front. Format and limits: docs/FORMAT.md, section "safetensors".
//
// Local: every function acts on the calling process only (no MPI). Files are read with
// pread only: opening a file reads its header, never its data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/fd.hpp"
#include "eplb/io/tensor.hpp"

namespace eplb::hf {

// The safetensors library's limit on the JSON header (MAX_HEADER_SIZE): 100 MB.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// The name of the single-file checkpoint and of the index of a sharded one.
inline constexpr std::string_view kSingleFileName = "model.safetensors";
inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

struct TensorEntry {
  std::string name;
  io::DType dtype = io::DType::kU8;
  std::vector<int64_t> shape;  // every dimension >= 0; empty for a scalar
  // Absolute byte offset of the tensor's bytes in the file: 8 + header_bytes + data_offsets[0].
  uint64_t data_begin = 0;
  uint64_t num_bytes = 0;  // dtype size x product of the shape
  bool operator==(const TensorEntry&) const = default;
};

// A parsed, validated header.
struct Header {
  std::vector<TensorEntry> tensors;             // in data-offset order (ties: by name)
  std::map<std::string, std::string> metadata;  // "__metadata__" (string -> string only)
  uint64_t header_bytes = 0;                    // N: the file is 8 + N + data bytes
};

// Validates the JSON header of a file whose data section (everything after the header) has
// `data_bytes` bytes. Pure. Sets header_bytes = header_json.size() and data_begin assuming
// the header is preceded by its 8-byte length. Throws core::Error(kInput) listing every
// problem, each naming `source` (the file) and the tensor: JSON that is not valid UTF-8 or
// not JSON, not an object, duplicate keys (any depth), a bad "__metadata__", unknown dtypes,
// unknown fields, shapes that are not arrays of non-negative integers, data_offsets that are
// not [begin, end] with begin <= end, dtype x shape != end - begin, and tensors that overlap,
// leave a gap, or lie outside the data section (the tensors must cover it exactly, as the
// safetensors library requires).
Header parse_header(std::string_view header_json, uint64_t data_bytes, const std::string& source);

// A safetensors file opened read-only. RAII over the file descriptor; move-only. Reads only
// the header on open, never the whole file. Reads are positioned (pread), so a const
// SafetensorsFile may be read from several threads at once.
class SafetensorsFile {
 public:
  // Throws core::Error: kInput when the file does not exist, is not a regular file, is
  // shorter than 8 bytes, its header length lies beyond the file or above kMaxHeaderBytes,
  // or parse_header refuses the header; kIo when it cannot be opened or read.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  const Header& header() const { return header_; }
  uint64_t file_size() const { return file_size_; }
  // nullptr if the file holds no tensor of that name.
  const TensorEntry* find(std::string_view name) const;
  // Reads bytes [offset, offset + out.size()) of tensor `t`'s data (t must come from this
  // file's header). Throws kInternal when the range lies outside the tensor, kIo (naming
  // the file and the tensor) on a read error or a file that shrank since open.
  void read(const TensorEntry& t, uint64_t offset, std::span<std::byte> out) const;
  // The header bytes exactly as in the file (8-byte length + JSON), for byte-exact export.
  std::string raw_prefix() const;

 private:
  SafetensorsFile(std::filesystem::path path, int fd, uint64_t file_size, std::string raw_prefix,
                  Header header);
  std::filesystem::path path_;
  core::Fd fd_;
  uint64_t file_size_ = 0;
  std::string raw_prefix_;
  Header header_;
  std::map<std::string, size_t, std::less<>> by_name_;  // name -> index in header_.tensors
};

// A Hugging Face model directory: model.safetensors.index.json (its "weight_map"), or a
// single model.safetensors without an index.
struct Index {
  std::filesystem::path dir;
  std::vector<std::string> files;                 // sorted, unique, plain file names
  std::map<std::string, std::string> weight_map;  // tensor name -> file name
  nlohmann::json index_metadata;                  // the index's "metadata" object, or null
};

// Loads and validates the directory's index (read with core::read_input_file, parsed
// strictly): "weight_map" must be an object of tensor name -> plain file name (no '/', not
// "." or ".."); every named file must exist and be a valid safetensors file holding the
// tensors the index names; no tensor may be held by two files. Without an index,
// model.safetensors alone makes an index of its tensors. Opens every file's header (not its
// data). Throws core::Error(kInput) listing every problem (kIo for unreadable files).
Index load_index(const std::filesystem::path& hf_dir);

// Every file of an index, opened once; lookup by tensor name.
class ModelFiles {
 public:
  // Opens every file of the index. Throws as SafetensorsFile::open, and kInput when a tensor
  // of the weight map is absent from its file (an index not from load_index).
  explicit ModelFiles(const Index& index);
  const Index& index() const { return index_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  bool contains(std::string_view tensor) const;
  // Throw core::Error(kInput) naming the tensor when the weight map does not list it.
  const SafetensorsFile& file_of(std::string_view tensor) const;
  const TensorEntry& entry(std::string_view tensor) const;

 private:
  struct Location {
    size_t file_idx = 0;
    const TensorEntry* entry = nullptr;
  };
  const Location& locate(std::string_view tensor) const;
  Index index_;
  std::vector<SafetensorsFile> files_;  // in index_.files order
  std::map<std::string, Location, std::less<>> locations_;
};

// Writes a file whose layout (header bytes and offsets) is fixed up front: any number of
// write() calls, in any order (from one thread, or several with disjoint ranges), then
// close(). Move-only. A writer destroyed without close() closes its descriptor without
// reporting errors and leaves the partial file (it lives in a staging directory).
class SafetensorsWriter {
 public:
  // Creates `path` (O_EXCL | O_NOFOLLOW, mode 0644 & ~umask) holding exactly `raw_prefix`
  // as header (so an export can reproduce an input file byte for byte) and sized to
  // raw_prefix.size() + data_bytes. Throws kIo naming the path (also when it exists).
  SafetensorsWriter(const std::filesystem::path& path, std::string raw_prefix, uint64_t data_bytes);
  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  const std::filesystem::path& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  // pwrite of `bytes` at `absolute_offset` (from the start of the file). The range must lie
  // in the data section (kInternal otherwise); kIo naming the file on failure.
  void write(uint64_t absolute_offset, std::span<const std::byte> bytes);
  // fsync and close; throws kIo naming the file on failure. Idempotent after success.
  void close();

 private:
  std::filesystem::path path_;
  core::Fd fd_;
  uint64_t prefix_bytes_ = 0;
  uint64_t file_size_ = 0;
};

// Builds the raw header (8-byte little-endian length + JSON, padded with spaces to a
// multiple of 8, as the safetensors library writes it) for `tensors_in_order`, whose data
// are laid out contiguously in that order. Sets each entry's data_begin (absolute) and
// num_bytes (from dtype and shape). JSON key order follows the safetensors library:
// "__metadata__" first (left out when `metadata` is empty), then the tensors in data order,
// each {"dtype","shape","data_offsets"}. Throws kInput on a duplicate name or one named
// "__metadata__".
std::string make_raw_prefix(std::vector<TensorEntry>& tensors_in_order,
                            const std::map<std::string, std::string>& metadata);

}  // namespace eplb::hf
