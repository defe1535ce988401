// Writing safetensors files whose layout is fixed up front (eplb/hf/safetensors.hpp).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "eplb/core/error.hpp"
#include "eplb/fs/create.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/hf/safetensors.hpp"
#include "fd.hpp"

namespace eplb::hf {
namespace {

using core::Error;
using core::ErrorKind;

using core::quoted;

// A JSON string as serde_json writes it (nlohmann escapes the same characters: '"', '\\'
// and control characters; other UTF-8 is kept as is).
std::string json_string(const std::string& text) { return nlohmann::json(text).dump(); }

}  // namespace

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::string raw_prefix,
                                     uint64_t data_bytes)
    : path_(path), prefix_bytes_(raw_prefix.size()), file_size_(raw_prefix.size() + data_bytes) {
  EPLB_ASSERT(raw_prefix.size() >= 8);
  core::Fd fd = fs::create_new_file(AT_FDCWD, path, O_WRONLY, 0644);
  // The size first (sparse): every later write lands inside the file, in any order.
  if (::ftruncate(fd.get(), static_cast<off_t>(file_size_)) != 0) {
    throw Error(ErrorKind::kIo, "cannot size " + quoted(path) + " to " +
                                    std::to_string(file_size_) + " bytes: " + std::strerror(errno));
  }
  detail::pwrite_all(fd.get(), std::as_bytes(std::span(raw_prefix.data(), raw_prefix.size())), 0,
                     path);
  fd_ = std::move(fd);
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::write(uint64_t absolute_offset, std::span<const std::byte> bytes) {
  EPLB_ASSERT(fd_);
  EPLB_ASSERT(absolute_offset >= prefix_bytes_ && absolute_offset <= file_size_ &&
              bytes.size() <= file_size_ - absolute_offset);
  detail::pwrite_all(fd_.get(), bytes, absolute_offset, path_);
}

void SafetensorsWriter::close() {
  if (!fd_) return;
  core::Fd fd = std::move(fd_);  // given up even on failure: a retry cannot help
  fs::sync_file(fd.get(), path_);
  try {
    fs::close_checked(fd);
  } catch (const Error& e) {
    throw core::with_prefix(e, quoted(path_) + ": ");
  }
}

std::string make_raw_prefix(std::vector<TensorEntry>& tensors_in_order,
                            const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> seen;
  core::ProblemList problems;
  for (const TensorEntry& t : tensors_in_order) {
    if (t.name == "__metadata__") {
      problems.add("safetensors header: a tensor may not be named '__metadata__'");
    }
    if (!seen.insert(t.name).second) {
      problems.add("safetensors header: tensor '" + t.name + "' is listed twice");
    }
  }
  problems.throw_if_any();

  // Key order as the safetensors library writes it: metadata, then tensors in data order.
  std::string json = "{";
  if (!metadata.empty()) json += "\"__metadata__\":" + nlohmann::json(metadata).dump();
  uint64_t offset = 0;
  for (TensorEntry& t : tensors_in_order) {
    uint64_t bytes = io::dtype_size(t.dtype);
    for (int64_t dim : t.shape) {
      EPLB_ASSERT(dim >= 0);
      bytes *= static_cast<uint64_t>(dim);
    }
    t.num_bytes = bytes;
    if (json.size() > 1) json += ',';
    json += json_string(t.name) + ":{\"dtype\":\"" + std::string(io::to_safetensors(t.dtype)) +
            "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) json += (i ? "," : "") + std::to_string(t.shape[i]);
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) +
            "]}";
    t.data_begin = offset;  // relative until the header length is known
    offset += bytes;
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');  // the library pads to 8 bytes with spaces
  const uint64_t header_bytes = json.size();
  std::string raw(8, '\0');
  for (int i = 0; i < 8; ++i)
    raw[static_cast<size_t>(i)] = static_cast<char>((header_bytes >> (8 * i)) & 0xff);
  raw += json;
  for (TensorEntry& t : tensors_in_order) t.data_begin += 8 + header_bytes;
  return raw;
}

}  // namespace eplb::hf
