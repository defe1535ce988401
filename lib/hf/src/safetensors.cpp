// Strict safetensors header parsing and positioned reads (eplb/hf/safetensors.hpp).
//
// The rules are the safetensors library's (safetensors/src/tensor.rs, `validate`): a JSON
// object of tensor name -> {dtype, shape, data_offsets} plus an optional "__metadata__" of
// strings; offsets relative to the data section, which the tensors must cover exactly, with
// no overlap and no gap. We are stricter in two ways, both documented in docs/FORMAT.md:
// duplicate keys are refused (serde would keep one silently) and so are unknown fields.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "eplb/core/error.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/fs/transfer.hpp"
#include "eplb/hf/safetensors.hpp"
#include "fd.hpp"

namespace eplb::hf {
namespace {

using core::Error;
using core::ErrorKind;
using core::json::describe;
using core::json::pointer_to_key;
using core::json::Reporter;
using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string known_dtypes() {
  std::string out;
  for (io::DType dtype : io::kAllDTypes) {
    if (!out.empty()) out += ", ";
    out += io::to_safetensors(dtype);
  }
  return out;
}

void parse_metadata(const Json& value, Reporter& report, Header& header) {
  const std::string ptr = pointer_to_key(kMetadataKey);
  if (value.is_null()) return;  // the Python library writes null for "no metadata"
  if (!value.is_object()) {
    report.add(ptr, "expected an object of strings, got " + describe(value));
    return;
  }
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string()) {
      report.add(ptr + pointer_to_key(key),
                 "metadata values must be strings, got " + describe(text));
      continue;
    }
    header.metadata.emplace(key, text.get<std::string>());
  }
}

// A tensor's [begin, end) in the data section, once its own fields are valid.
struct Span {
  uint64_t begin = 0;
  uint64_t end = 0;
  size_t tensor_idx = 0;
};

std::optional<io::DType> parse_dtype_field(const Json& value, const std::string& ptr,
                                           Reporter& report) {
  if (!value.is_string()) {
    report.add(ptr, "dtype must be a string, got " + describe(value));
    return std::nullopt;
  }
  const std::string text = value.get<std::string>();
  std::optional<io::DType> dtype = io::dtype_from_safetensors(text);
  if (!dtype) report.add(ptr, "unknown dtype \"" + text + "\" (known: " + known_dtypes() + ")");
  return dtype;
}

// The number of elements, or nullopt after reporting a problem.
std::optional<uint64_t> parse_shape_field(const Json& value, const std::string& ptr,
                                          Reporter& report, std::vector<int64_t>& shape) {
  if (!value.is_array()) {
    report.add(ptr, "shape must be an array of non-negative integers, got " + describe(value));
    return std::nullopt;
  }
  uint64_t elements = 1;
  bool ok = true;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::optional<int64_t> dim = core::json::as_int(value[i]);
    if (!dim || *dim < 0) {
      report.add(ptr + "/" + std::to_string(i),
                 "dimension must be a non-negative integer, got " + describe(value[i]));
      ok = false;
      continue;
    }
    const auto udim = static_cast<uint64_t>(*dim);
    if (udim != 0 && elements > UINT64_MAX / udim) {
      report.add(ptr, "shape " + value.dump() + " has more than 2^64 elements");
      return std::nullopt;
    }
    elements *= udim;
    shape.push_back(*dim);
  }
  if (!ok) return std::nullopt;
  return elements;
}

std::optional<std::pair<uint64_t, uint64_t>> parse_offsets_field(const Json& value,
                                                                 const std::string& ptr,
                                                                 Reporter& report) {
  const auto non_negative = [](const Json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  };
  if (!value.is_array() || value.size() != 2 || !non_negative(value[0]) ||
      !non_negative(value[1])) {
    report.add(ptr, "data_offsets must be [begin, end] with non-negative integers, got " +
                        describe(value) + (value.is_array() ? " " + value.dump() : ""));
    return std::nullopt;
  }
  const auto begin = value[0].get<uint64_t>();
  const auto end = value[1].get<uint64_t>();
  if (begin > end) {
    report.add(ptr, "data_offsets [" + std::to_string(begin) + "," + std::to_string(end) +
                        "] end before they begin");
    return std::nullopt;
  }
  return std::make_pair(begin, end);
}

// One tensor's fields. Adds the entry (even if invalid, so indices stay aligned) and, when
// its offsets agree with its dtype and shape, its span.
void parse_tensor(const std::string& name, const Json& value, Reporter& report, Header& header,
                  std::vector<Span>& spans, bool& offsets_ok) {
  const std::string ptr = pointer_to_key(name);
  if (!value.is_object()) {
    report.add(ptr, "tensor '" + name + "' must be an object, got " + describe(value));
    offsets_ok = false;
    return;
  }
  for (const auto& [key, field] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      report.add(ptr + pointer_to_key(key), "unknown field \"" + key + "\" of tensor '" + name +
                                                "' (expected dtype, shape, data_offsets)");
    }
  }
  bool complete = true;
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) {
      report.add(ptr, "tensor '" + name + "' has no \"" + key + "\"");
      complete = false;
    }
  }
  if (!complete) {
    offsets_ok = false;  // a tensor without its fields cannot be placed in the data section
    return;
  }
  TensorEntry entry;
  entry.name = name;
  const std::optional<io::DType> dtype = parse_dtype_field(value["dtype"], ptr + "/dtype", report);
  const std::optional<uint64_t> elements =
      parse_shape_field(value["shape"], ptr + "/shape", report, entry.shape);
  const auto offsets = parse_offsets_field(value["data_offsets"], ptr + "/data_offsets", report);
  if (!offsets) {
    offsets_ok = false;
    return;
  }
  const auto [begin, end] = *offsets;
  if (dtype && elements) {
    entry.dtype = *dtype;
    const uint64_t size = io::dtype_size(*dtype);
    if (*elements > UINT64_MAX / size || *elements * size != end - begin) {
      const std::string bytes =
          *elements > UINT64_MAX / size ? "more than 2^64" : std::to_string(*elements * size);
      report.add(ptr + "/data_offsets",
                 "tensor '" + name + "': dtype " + value["dtype"].get<std::string>() + " x shape " +
                     shape_text(entry.shape) + " is " + bytes + " bytes, but data_offsets [" +
                     std::to_string(begin) + "," + std::to_string(end) + "] hold " +
                     std::to_string(end - begin));
    }
  }
  entry.data_begin = begin;  // relative for now; made absolute once all checks passed
  entry.num_bytes = end - begin;
  spans.push_back({begin, end, header.tensors.size()});
  header.tensors.push_back(std::move(entry));
}

// The tensors must cover [0, data_bytes) exactly: sorted by offset, each begins where the
// previous one ended (zero-byte tensors included) and the last ends at data_bytes.
void check_coverage(std::vector<Span>& spans, uint64_t data_bytes, const Header& header,
                    Reporter& report) {
  std::sort(spans.begin(), spans.end(), [&](const Span& a, const Span& b) {
    return std::tie(a.begin, a.end, header.tensors[a.tensor_idx].name) <
           std::tie(b.begin, b.end, header.tensors[b.tensor_idx].name);
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const Span& span : spans) {
    const std::string& name = header.tensors[span.tensor_idx].name;
    const std::string ptr = pointer_to_key(name) + "/data_offsets";
    const std::string range =
        "[" + std::to_string(span.begin) + "," + std::to_string(span.end) + "]";
    if (span.end > data_bytes) {
      report.add(ptr, "tensor '" + name + "': data_offsets " + range +
                          " lie out of bounds: the data section has " + std::to_string(data_bytes) +
                          " bytes");
    } else if (span.begin < covered) {
      report.add(ptr, "tensor '" + name + "': data_offsets " + range + " overlap tensor '" +
                          *previous + "', which ends at " + std::to_string(covered));
    } else if (span.begin > covered) {
      report.add(ptr, "tensor '" + name + "': data_offsets " + range + " leave a gap: bytes [" +
                          std::to_string(covered) + "," + std::to_string(span.begin) +
                          ") of the data section belong to no tensor");
    }
    if (span.end >= covered) {
      covered = span.end;
      previous = &name;
    }
  }
  if (covered < data_bytes) {
    report.add("", "bytes [" + std::to_string(covered) + "," + std::to_string(data_bytes) +
                       ") of the data section belong to no tensor" +
                       (previous ? " (after tensor '" + *previous + "')" : ""));
  }
}

}  // namespace

Header parse_header(std::string_view header_json, uint64_t data_bytes, const std::string& source) {
  Reporter report(source);
  if (header_json.size() > kMaxHeaderBytes) {
    report.add("", "the header is " + std::to_string(header_json.size()) +
                       " bytes, above the limit of " + std::to_string(kMaxHeaderBytes));
    report.throw_if_any();
  }
  const Json doc = core::json::parse_document(std::string(header_json), report);
  if (!doc.is_object()) {
    report.add("", "the header must be a JSON object, got " + describe(doc));
    report.throw_if_any();
  }
  Header header;
  header.header_bytes = header_json.size();
  std::vector<Span> spans;
  bool offsets_ok = true;
  for (const auto& [key, value] : doc.items()) {
    if (key == kMetadataKey) {
      parse_metadata(value, report, header);
    } else {
      parse_tensor(key, value, report, header, spans, offsets_ok);
    }
  }
  // Gaps and overlaps only mean something when every tensor's offsets could be read.
  if (offsets_ok) check_coverage(spans, data_bytes, header, report);
  report.throw_if_any();

  std::sort(spans.begin(), spans.end(), [&](const Span& a, const Span& b) {
    return std::tie(a.begin, a.end, header.tensors[a.tensor_idx].name) <
           std::tie(b.begin, b.end, header.tensors[b.tensor_idx].name);
  });
  std::vector<TensorEntry> ordered;
  ordered.reserve(header.tensors.size());
  for (const Span& span : spans) {
    TensorEntry& entry = header.tensors[span.tensor_idx];
    entry.data_begin += 8 + header.header_bytes;
    ordered.push_back(std::move(entry));
  }
  header.tensors = std::move(ordered);
  return header;
}

SafetensorsFile::SafetensorsFile(std::filesystem::path path, int fd, uint64_t file_size,
                                 std::string raw_prefix, Header header)
    : path_(std::move(path)),
      fd_(fd),
      file_size_(file_size),
      raw_prefix_(std::move(raw_prefix)),
      header_(std::move(header)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) by_name_.emplace(header_.tensors[i].name, i);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string where = "'" + path.string() + "': ";
  core::Fd fd = core::open_regular_file(path, "safetensors file");
  const uint64_t size = fs::file_size(fd.get(), path);
  if (size < 8) {
    throw Error(ErrorKind::kInput, where + "the file is " + std::to_string(size) +
                                       " bytes, too short for a safetensors file (it starts "
                                       "with an 8-byte header length)");
  }
  std::byte len_bytes[8];
  detail::pread_exact(fd.get(), len_bytes, 0, path, "the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | std::to_integer<uint64_t>(len_bytes[i]);
  if (header_len > kMaxHeaderBytes) {
    throw Error(ErrorKind::kInput, where + "header length " + std::to_string(header_len) +
                                       " is above the limit of " + std::to_string(kMaxHeaderBytes) +
                                       " bytes");
  }
  if (header_len > size - 8) {
    throw Error(ErrorKind::kInput, where + "header length " + std::to_string(header_len) +
                                       " lies beyond the end of the file (" + std::to_string(size) +
                                       " bytes)");
  }
  std::string raw(8 + header_len, '\0');
  std::memcpy(raw.data(), len_bytes, 8);
  detail::pread_exact(fd.get(), std::as_writable_bytes(std::span(raw.data() + 8, header_len)), 8,
                      path, "the header");
  Header header =
      parse_header(std::string_view(raw).substr(8), size - 8 - header_len, path.string());
  return SafetensorsFile(path, fd.release(), size, std::move(raw), std::move(header));
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

void SafetensorsFile::read(const TensorEntry& t, uint64_t offset, std::span<std::byte> out) const {
  EPLB_ASSERT(fd_);
  EPLB_ASSERT(offset <= t.num_bytes && out.size() <= t.num_bytes - offset);
  EPLB_ASSERT(t.data_begin + t.num_bytes <= file_size_);
  detail::pread_exact(fd_.get(), out, t.data_begin + offset, path_, "tensor '" + t.name + "'");
}

std::string SafetensorsFile::raw_prefix() const { return raw_prefix_; }

}  // namespace eplb::hf
