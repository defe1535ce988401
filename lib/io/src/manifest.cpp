#include "eplb/io/manifest.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/io/shard.hpp"
#include "tensor_rules.hpp"
#include "xxh3.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;
using nlohmann::json;

constexpr const char* kFormat = "eplb-manifest";
constexpr int kVersion = 1;
constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();

std::string hex16(uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

std::optional<uint64_t> parse_hex16(const std::string& text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    const int digit = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + static_cast<uint64_t>(digit);
  }
  return value;
}

using core::json::as_int;
using core::json::describe;
using core::json::pointer_to_key;
using core::json::Reporter;

// Reports every key of `object` not in `keys` and every key of `required` it lacks.
void check_keys(const json& object, const std::string& ptr, Reporter& report,
                std::initializer_list<std::string_view> keys,
                std::initializer_list<std::string_view> required) {
  for (const auto& item : object.items()) {
    if (std::find(keys.begin(), keys.end(), item.key()) == keys.end()) {
      report.add(ptr + pointer_to_key(item.key()), "unknown key \"" + item.key() + "\"");
    }
  }
  for (std::string_view key : required) {
    if (!object.contains(key)) report.add(ptr, "missing required key \"" + std::string(key) + "\"");
  }
}

// The string at `key`, or nullopt (reported when present but not a string).
std::optional<std::string> string_at(const json& obj, const char* key, const std::string& ptr,
                                     Reporter& report) {
  if (!obj.contains(key)) return std::nullopt;
  const json& value = obj.at(key);
  if (!value.is_string()) {
    report.add(ptr + "/" + key, "expected a string, got " + describe(value));
    return std::nullopt;
  }
  return value.get<std::string>();
}

std::optional<TensorSpec> parse_tensor(const json& j, const std::string& ptr,
                                       std::set<std::string>& seen, Reporter& report) {
  const size_t num_problems = report.problems().size();
  if (!j.is_object()) {
    report.add(ptr, "expected a tensor object, got " + describe(j));
    return std::nullopt;
  }
  check_keys(j, ptr, report, {"name", "dtype", "shape"}, {"name", "dtype", "shape"});
  TensorSpec spec;
  if (auto name = string_at(j, "name", ptr, report)) {
    spec.name = *name;
    if (std::string problem = detail::tensor_name_problem(*name); !problem.empty()) {
      report.add(ptr + "/name", problem);
    } else if (!seen.insert(*name).second) {
      report.add(ptr + "/name", "tensor '" + *name + "' is listed twice");
    }
  }
  if (auto dtype_text = string_at(j, "dtype", ptr, report)) {
    const std::optional<DType> dtype = parse_dtype(*dtype_text);
    if (!dtype) report.add(ptr + "/dtype", "unknown dtype '" + *dtype_text + "'");
    spec.dtype = dtype.value_or(DType::kFp8E4m3);  // 1 byte: the size check stays sound
  }
  if (!j.contains("shape")) return std::nullopt;
  const json& shape = j.at("shape");
  if (!shape.is_array() || shape.empty()) {
    report.add(ptr + "/shape", "expected a non-empty array of positive integers");
    return std::nullopt;
  }
  uint64_t row_bytes = dtype_size(spec.dtype);
  for (size_t i = 0; i < shape.size(); ++i) {
    const auto dim = as_int(shape[i]);
    const std::string at = ptr + "/shape/" + std::to_string(i);
    if (!dim || *dim <= 0) {
      report.add(at, "expected a positive integer, got " + describe(shape[i]));
    } else if (static_cast<uint64_t>(*dim) > detail::kMaxRowBytes / row_bytes) {
      report.add(at, "one expert's tensor would exceed 1 TiB");
    } else {
      row_bytes *= static_cast<uint64_t>(*dim);
      spec.shape.push_back(*dim);
    }
  }
  if (report.problems().size() != num_problems) return std::nullopt;
  return spec;
}

void parse_files(const json& j, int32_t ep_size, std::vector<FileEntry>& files, Reporter& report) {
  if (!j.is_array()) return report.add("/files", "expected an array, got " + describe(j));
  if (ep_size > 0 && j.size() != static_cast<size_t>(ep_size)) {
    report.add("/files", "lists " + std::to_string(j.size()) +
                             " files, expected one per EP rank (" + std::to_string(ep_size) + ")");
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string ptr = "/files/" + std::to_string(i);
    if (!j[i].is_object()) {
      report.add(ptr, "expected a file object, got " + describe(j[i]));
      continue;
    }
    check_keys(j[i], ptr, report, {"name", "size", "xxh3"}, {"name", "size", "xxh3"});
    FileEntry entry;
    const std::string expected = shard_file_name(static_cast<int32_t>(i));
    if (auto name = string_at(j[i], "name", ptr, report)) {
      entry.name = *name;
      if (*name != expected) {
        report.add(ptr + "/name", "expected \"" + expected + "\", got \"" + *name + "\"");
      }
    }
    if (j[i].contains("size")) {
      const json& size = j[i].at("size");
      if (size.is_number_unsigned()) {
        entry.size = size.get<uint64_t>();
      } else {
        report.add(ptr + "/size", "expected a byte count, got " + describe(size));
      }
    }
    if (j[i].contains("xxh3") && j[i].at("xxh3").is_null()) {
      entry.xxh3_known = false;  // left out by an update in place
    } else if (auto hex = string_at(j[i], "xxh3", ptr, report)) {
      const auto value = parse_hex16(*hex);
      if (!value) {
        report.add(ptr + "/xxh3", "expected 16 lowercase hex digits, got \"" + *hex + "\"");
      }
      entry.xxh3 = value.value_or(0);
    }
    files.push_back(std::move(entry));
  }
}

std::string hf_to_json(const HfSource& hf) {
  nlohmann::ordered_json head = {{"model_type", hf.model_type},
                                 {"container", hf.container},
                                 {"model_layers", hf.model_layers}};
  std::string text = head.dump();
  text.pop_back();  // the closing brace: the lists follow, one item per line
  std::string out = ",\n  \"hugging_face\": " + text + ",\n    \"tensors\": [";
  for (size_t i = 0; i < hf.tensors.size(); ++i) {
    const HfTensor& t = hf.tensors[i];
    nlohmann::ordered_json item = {
        {"hf_template", t.hf_template}, {"stacked", t.stacked}, {"shape", t.shape}};
    out += (i ? ",\n      " : "\n      ") + item.dump();
  }
  out += "\n    ],\n    \"files\": [";
  for (size_t i = 0; i < hf.files.size(); ++i) {
    nlohmann::ordered_json item = {{"name", hf.files[i].name}, {"size", hf.files[i].size}};
    out += (i ? ",\n      " : "\n      ") + item.dump();
  }
  return out + "\n    ]\n  }";
}

void parse_hf(const json& j, size_t num_tensors, HfSource& hf, Reporter& report) {
  const std::string ptr = "/hugging_face";
  if (!j.is_object()) return report.add(ptr, "expected an object, got " + describe(j));
  check_keys(j, ptr, report, {"model_type", "container", "model_layers", "tensors", "files"},
             {"model_type", "container", "model_layers", "tensors", "files"});
  hf.model_type = string_at(j, "model_type", ptr, report).value_or("");
  hf.container = string_at(j, "container", ptr, report).value_or("");
  if (j.contains("model_layers")) {
    const json& layers = j.at("model_layers");
    if (!layers.is_array()) report.add(ptr + "/model_layers", "expected an array of layer numbers");
    for (size_t i = 0; layers.is_array() && i < layers.size(); ++i) {
      const auto layer = as_int(layers[i]);
      if (!layer || *layer < 0 || *layer > kMaxI32 ||
          (!hf.model_layers.empty() && *layer <= hf.model_layers.back())) {
        report.add(ptr + "/model_layers/" + std::to_string(i),
                   "expected ascending non-negative layer numbers, got " + describe(layers[i]));
        continue;
      }
      hf.model_layers.push_back(static_cast<int32_t>(*layer));
    }
  }
  if (j.contains("tensors")) {
    const json& tensors = j.at("tensors");
    if (!tensors.is_array() || tensors.size() != num_tensors) {
      report.add(ptr + "/tensors",
                 "expected one entry per tensor (" + std::to_string(num_tensors) + ")");
    }
    for (size_t i = 0; tensors.is_array() && i < tensors.size(); ++i) {
      const std::string at = ptr + "/tensors/" + std::to_string(i);
      if (!tensors[i].is_object()) {
        report.add(at, "expected an object, got " + describe(tensors[i]));
        continue;
      }
      check_keys(tensors[i], at, report, {"hf_template", "stacked", "shape"},
                 {"hf_template", "stacked", "shape"});
      HfTensor t;
      t.hf_template = string_at(tensors[i], "hf_template", at, report).value_or("");
      if (t.hf_template.find("{L}") == std::string::npos) {
        report.add(at + "/hf_template", "expected a name holding {L}");
      }
      const json& stacked = tensors[i].contains("stacked") ? tensors[i].at("stacked") : json();
      if (!stacked.is_boolean()) report.add(at + "/stacked", "expected true or false");
      t.stacked = stacked.is_boolean() && stacked.get<bool>();
      const json& shape = tensors[i].contains("shape") ? tensors[i].at("shape") : json();
      if (!shape.is_array()) {
        report.add(at + "/shape", "expected an array of non-negative integers");
      }
      for (size_t d = 0; shape.is_array() && d < shape.size(); ++d) {
        const auto dim = as_int(shape[d]);
        if (!dim || *dim < 0) {
          report.add(at + "/shape/" + std::to_string(d), "expected a non-negative integer");
        } else {
          t.shape.push_back(*dim);
        }
      }
      hf.tensors.push_back(std::move(t));
    }
  }
  if (j.contains("files")) {
    const json& files = j.at("files");
    if (!files.is_array()) report.add(ptr + "/files", "expected an array");
    for (size_t i = 0; files.is_array() && i < files.size(); ++i) {
      const std::string at = ptr + "/files/" + std::to_string(i);
      if (!files[i].is_object()) {
        report.add(at, "expected an object, got " + describe(files[i]));
        continue;
      }
      check_keys(files[i], at, report, {"name", "size"}, {"name", "size"});
      HfFileEntry f;
      f.name = string_at(files[i], "name", at, report).value_or("");
      const json& size = files[i].contains("size") ? files[i].at("size") : json();
      if (!size.is_number_unsigned()) report.add(at + "/size", "expected a byte count");
      if (size.is_number_unsigned()) f.size = size.get<uint64_t>();
      hf.files.push_back(std::move(f));
    }
  }
}

}  // namespace

std::string to_json(const Manifest& m) {
  // Hand-laid so that the file stays readable: one tensor, layer or file per line.
  const placement::Placement& p = m.placement;
  std::string out = "{\n  \"format\": \"" + std::string(kFormat) +
                    "\",\n  \"version\": " + std::to_string(kVersion) + ",\n";
  if (!m.checkpoint_id.empty())
    out += "  \"checkpoint_id\": " + json(m.checkpoint_id).dump() + ",\n";
  out += "  \"tensors\": [";
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorSpec& t = m.tensors[i];
    nlohmann::ordered_json item = {
        {"name", t.name}, {"dtype", std::string(to_string(t.dtype))}, {"shape", t.shape}};
    out += (i ? ",\n    " : "\n    ") + item.dump();
  }
  out += "\n  ],\n  \"placement\": {\n    \"ep_size\": " + std::to_string(p.ep_size) +
         ", \"num_slots_per_rank\": " + std::to_string(p.num_slots_per_rank) +
         ", \"num_logical_experts\": " + std::to_string(p.num_logical_experts) +
         ",\n    \"physical_to_logical_map\": [";
  for (size_t layer = 0; layer < p.physical_to_logical_map.size(); ++layer) {
    out += (layer ? ",\n      " : "\n      ") + json(p.physical_to_logical_map[layer]).dump();
  }
  out += "\n    ]\n  },\n  \"files\": [";
  for (size_t i = 0; i < m.files.size(); ++i) {
    const FileEntry& f = m.files[i];
    nlohmann::ordered_json item = {{"name", f.name}, {"size", f.size}, {"xxh3", nullptr}};
    if (f.xxh3_known) item["xxh3"] = hex16(f.xxh3);
    out += (i ? ",\n    " : "\n    ") + item.dump();
  }
  out += "\n  ]";
  if (m.hugging_face) out += hf_to_json(*m.hugging_face);
  return out + "\n}\n";
}

Manifest parse_manifest(const std::string& json_text, const std::string& source_name) {
  Reporter report(source_name);
  const json j = core::json::parse_document(json_text, report);
  Manifest m;
  if (!j.is_object()) {
    report.add("", "expected a manifest object, got " + describe(j));
    report.throw_if_any();
  }
  // "checkpoint_id" and "hugging_face" (checkpoints made by `import`) are optional.
  check_keys(
      j, "", report,
      {"format", "version", "checkpoint_id", "tensors", "placement", "files", "hugging_face"},
      {"format", "version", "tensors", "placement", "files"});
  if (auto id = string_at(j, "checkpoint_id", "", report)) {
    if (id->empty() || id->size() > 64 || !std::all_of(id->begin(), id->end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
        })) {
      report.add("/checkpoint_id", "expected 1 to 64 letters, digits or '-', got \"" + *id + "\"");
    } else {
      m.checkpoint_id = *id;
    }
  }
  if (auto format = string_at(j, "format", "", report); format && *format != kFormat) {
    report.add("/format", "expected \"" + std::string(kFormat) + "\", got \"" + *format + "\"");
  }
  if (j.contains("version")) {
    const auto version = as_int(j.at("version"));
    if (!version) {
      report.add("/version", "expected an integer, got " + describe(j.at("version")));
    } else if (*version != kVersion) {
      report.add("/version", "version " + std::to_string(*version) +
                                 " is not supported (this build reads version 1)");
    }
  }
  if (j.contains("tensors")) {
    const json& tensors = j.at("tensors");
    if (!tensors.is_array() || tensors.empty())
      report.add("/tensors", "expected a non-empty array");
    std::set<std::string> seen;
    for (size_t i = 0; tensors.is_array() && i < tensors.size(); ++i) {
      auto spec = parse_tensor(tensors[i], "/tensors/" + std::to_string(i), seen, report);
      if (spec) m.tensors.push_back(std::move(*spec));
    }
  }
  // The placement has one validator, lib/placement's, whatever file it comes in.
  if (j.contains("placement")) {
    auto held = placement::read_placement_object(j.at("placement"), "/placement", report);
    if (held) m.placement = std::move(*held);
  }
  if (j.contains("files")) parse_files(j.at("files"), m.placement.ep_size, m.files, report);
  if (j.contains("hugging_face")) {
    m.hugging_face.emplace();
    parse_hf(j.at("hugging_face"), m.tensors.size(), *m.hugging_face, report);
  }
  report.throw_if_any();
  return m;
}

Manifest load_manifest(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kManifestName;
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    throw Error(ErrorKind::kInput, "'" + dir.string() + "' is not a complete eplb checkpoint: '" +
                                       path.string() + "' does not exist");
  }
  // Regular files of bounded size only: a FIFO or /dev/zero named manifest.json is refused.
  return parse_manifest(core::read_input_file(path, "manifest"), path.string());
}

std::string checkpoint_id_for(std::string_view identity) {
  const XXH128_hash_t hash = XXH3_128bits(identity.data(), identity.size());
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hash.high64),
                static_cast<unsigned long long>(hash.low64));
  return buf;
}

FileEntry describe_file(const std::filesystem::path& path) {
  detail::Xxh3Stream state;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorKind::kIo, "cannot open '" + path.string() + "': " + std::strerror(errno));
  // Large sequential reads: this hashes whole shards, at disk speed.
  constexpr size_t kChunk = size_t{4} << 20;
  std::unique_ptr<char[]> buf(new char[kChunk]);
  FileEntry entry{path.filename().string(), 0, 0};
  while (true) {
    const ssize_t n = ::read(fd, buf.get(), kChunk);
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::kIo, "cannot read '" + path.string() + "': " + std::strerror(err));
    }
    state.update(buf.get(), static_cast<size_t>(n));
    entry.size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  entry.xxh3 = state.digest();
  return entry;
}

bool check_file_entry(const std::filesystem::path& path, const FileEntry& want, uint64_t hash_up_to,
                      core::ProblemList& problems) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return true;
  auto size_differs = [&](uint64_t size) {
    problems.add(fmt::format(
        "'{}' is {} bytes, but the manifest says {}: it was modified, truncated or comes "
        "from another checkpoint",
        path.string(), size, want.size));
    return false;
  };
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size != want.size) return size_differs(size);
  if (!want.xxh3_known || size > hash_up_to) return true;
  const FileEntry have = describe_file(path);
  if (have.size != want.size) return size_differs(have.size);  // changed since the stat
  if (have.xxh3 != want.xxh3) {
    problems.add(fmt::format(
        "'{}': whole-file xxh3 {:016x} differs from the manifest's {:016x}: it was modified "
        "or comes from another checkpoint",
        path.string(), have.xxh3, want.xxh3));
    return false;
  }
  return true;
}

}  // namespace eplb::io
