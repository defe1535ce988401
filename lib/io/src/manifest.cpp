#include "eplb/io/manifest.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "eplb/core/error.hpp"
#include "eplb/io/shard.hpp"
#include "tensor_rules.hpp"

namespace eplb::io {
namespace {

using core::Error;
using core::ErrorKind;
using nlohmann::json;

constexpr const char* kFormat = "eplb-manifest";
constexpr int kVersion = 1;
constexpr size_t kMaxProblems = 50;  // a corrupt map would otherwise give thousands

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

// Collects problems, each with the JSON pointer of the value it is about.
class Checker {
 public:
  explicit Checker(std::string source) : source_(std::move(source)) {}

  void add(const std::string& pointer, const std::string& what) {
    if (problems_.size() < kMaxProblems) {
      problems_.add("'" + source_ + "' at " + (pointer.empty() ? "/" : pointer) + ": " + what);
    } else {
      ++num_dropped_;
    }
  }

  // Checks `j` is an object with exactly `keys`; returns false if it is not an object.
  bool object(const json& j, const std::string& ptr, std::initializer_list<const char*> keys) {
    if (!j.is_object()) {
      add(ptr, "expected an object");
      return false;
    }
    for (const char* key : keys) {
      if (!j.contains(key)) add(ptr, std::string("missing key '") + key + "'");
    }
    for (const auto& item : j.items()) {
      if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return item.key() == k; })) {
        add((json::json_pointer(ptr) / item.key()).to_string(), "unknown key");
      }
    }
    return true;
  }

  std::optional<int64_t> integer(const json& obj, const char* key, const std::string& ptr,
                                 int64_t min, int64_t max) {
    if (!obj.contains(key)) return std::nullopt;
    const json& j = obj.at(key);
    const std::string at = ptr + "/" + key;
    if (!j.is_number_integer()) {
      add(at, "expected an integer");
      return std::nullopt;
    }
    // Non-negative numbers parse as unsigned; one above INT64_MAX must not wrap.
    const bool huge = j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(max);
    if (huge || j.get<int64_t>() < min || j.get<int64_t>() > max) {
      add(at, "value " + j.dump() + " is out of range [" + std::to_string(min) + ", " +
                  std::to_string(max) + "]");
      return std::nullopt;
    }
    return j.get<int64_t>();
  }

  std::optional<std::string> string(const json& obj, const char* key, const std::string& ptr) {
    if (!obj.contains(key)) return std::nullopt;
    if (!obj.at(key).is_string()) {
      add(ptr + "/" + key, "expected a string");
      return std::nullopt;
    }
    return obj.at(key).get<std::string>();
  }

  size_t num_problems() const { return problems_.size() + num_dropped_; }

  void throw_if_any() {
    if (num_dropped_ > 0) {
      problems_.add("'" + source_ + "': " + std::to_string(num_dropped_) +
                    " more problems not shown");
    }
    problems_.throw_if_any();
  }

 private:
  std::string source_;
  core::ProblemList problems_{ErrorKind::kInput};
  size_t num_dropped_ = 0;
};

constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();

std::optional<TensorSpec> parse_tensor(Checker& c, const json& j, const std::string& ptr,
                                       std::set<std::string>& seen) {
  const size_t num_problems = c.num_problems();
  if (!c.object(j, ptr, {"name", "dtype", "shape"})) return std::nullopt;
  TensorSpec spec;
  if (auto name = c.string(j, "name", ptr)) {
    spec.name = *name;
    if (std::string problem = detail::tensor_name_problem(*name); !problem.empty()) {
      c.add(ptr + "/name", problem);
    } else if (!seen.insert(*name).second) {
      c.add(ptr + "/name", "tensor '" + *name + "' is listed twice");
    }
  }
  if (auto dtype_text = c.string(j, "dtype", ptr)) {
    const std::optional<DType> dtype = parse_dtype(*dtype_text);
    if (!dtype) c.add(ptr + "/dtype", "unknown dtype '" + *dtype_text + "'");
    spec.dtype = dtype.value_or(DType::kFp8E4m3);  // 1 byte: the size check stays sound
  }
  if (!j.contains("shape")) return std::nullopt;
  const json& shape = j.at("shape");
  if (!shape.is_array() || shape.empty()) {
    c.add(ptr + "/shape", "expected a non-empty array of positive integers");
    return std::nullopt;
  }
  uint64_t row_bytes = dtype_size(spec.dtype);
  for (size_t i = 0; i < shape.size(); ++i) {
    const json& dim = shape[i];
    const std::string at = ptr + "/shape/" + std::to_string(i);
    if (!dim.is_number_integer() || dim.get<int64_t>() <= 0) {
      c.add(at, "expected a positive integer, got " + dim.dump());
    } else if (dim.get<uint64_t>() > detail::kMaxRowBytes / row_bytes) {
      c.add(at, "one expert's tensor would exceed 1 TiB");
    } else {
      row_bytes *= dim.get<uint64_t>();
      spec.shape.push_back(dim.get<int64_t>());
    }
  }
  if (c.num_problems() != num_problems) return std::nullopt;
  return spec;
}

void parse_map_row(Checker& c, const json& row, const std::string& ptr,
                   const placement::Placement& p, std::vector<int32_t>& out) {
  const size_t num_slots =
      static_cast<size_t>(p.ep_size) * static_cast<size_t>(p.num_slots_per_rank);
  if (!row.is_array()) return c.add(ptr, "expected an array of logical expert ids");
  if (row.size() != num_slots) {
    return c.add(ptr, "has " + std::to_string(row.size()) + " slots, expected ep_size * " +
                          "num_slots_per_rank = " + std::to_string(num_slots));
  }
  for (size_t i = 0; i < row.size(); ++i) {
    const json& id = row[i];
    if (!id.is_number_integer() || id.get<int64_t>() < -1 ||
        id.get<int64_t>() >= p.num_logical_experts) {
      c.add(ptr + "/" + std::to_string(i), "logical expert id " + id.dump() +
                                               " is out of range [-1, " +
                                               std::to_string(p.num_logical_experts) + ")");
      continue;
    }
    out.push_back(id.get<int32_t>());
  }
}

void parse_placement_obj(Checker& c, const json& j, placement::Placement& p) {
  const std::string ptr = "/placement";
  if (!c.object(
          j, ptr,
          {"ep_size", "num_slots_per_rank", "num_logical_experts", "physical_to_logical_map"})) {
    return;
  }
  const auto ep_size = c.integer(j, "ep_size", ptr, 1, kMaxI32);
  const auto num_slots = c.integer(j, "num_slots_per_rank", ptr, 1, kMaxI32);
  const auto num_experts = c.integer(j, "num_logical_experts", ptr, 1, kMaxI32);
  if (!ep_size || !num_slots || !num_experts || !j.contains("physical_to_logical_map")) return;
  p.ep_size = static_cast<int32_t>(*ep_size);
  p.num_slots_per_rank = static_cast<int32_t>(*num_slots);
  p.num_logical_experts = static_cast<int32_t>(*num_experts);
  const json& map = j.at("physical_to_logical_map");
  if (!map.is_array())
    return c.add(ptr + "/physical_to_logical_map", "expected an array of layers");
  for (size_t layer = 0; layer < map.size(); ++layer) {
    p.physical_to_logical_map.emplace_back();
    parse_map_row(c, map[layer], ptr + "/physical_to_logical_map/" + std::to_string(layer), p,
                  p.physical_to_logical_map.back());
  }
}

void parse_files(Checker& c, const json& j, int32_t ep_size, std::vector<FileEntry>& files) {
  if (!j.is_array()) return c.add("/files", "expected an array");
  if (ep_size > 0 && j.size() != static_cast<size_t>(ep_size)) {
    c.add("/files", "lists " + std::to_string(j.size()) + " files, expected one per EP rank (" +
                        std::to_string(ep_size) + ")");
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string ptr = "/files/" + std::to_string(i);
    if (!c.object(j[i], ptr, {"name", "size", "xxh3"})) continue;
    FileEntry entry;
    const std::string expected = shard_file_name(static_cast<int32_t>(i));
    if (auto name = c.string(j[i], "name", ptr)) {
      entry.name = *name;
      if (*name != expected)
        c.add(ptr + "/name", "expected \"" + expected + "\", got \"" + *name + "\"");
    }
    const json* size = j[i].contains("size") ? &j[i].at("size") : nullptr;
    if (size && !size->is_number_unsigned()) c.add(ptr + "/size", "expected a byte count");
    if (size && size->is_number_unsigned()) entry.size = size->get<uint64_t>();
    if (auto hex = c.string(j[i], "xxh3", ptr)) {
      const auto value = parse_hex16(*hex);
      if (!value) c.add(ptr + "/xxh3", "expected 16 lowercase hex digits, got \"" + *hex + "\"");
      entry.xxh3 = value.value_or(0);
    }
    files.push_back(std::move(entry));
  }
}

// nlohmann keeps the last of duplicate keys silently; a strict parser must not.
json parse_rejecting_duplicates(const std::string& text, const std::string& source) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end) keys.pop_back();
    if (event == json::parse_event_t::key &&
        !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, callback);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    what = what.substr(what.find(']') + 2);  // drop "[json.exception.parse_error.101] "
    throw Error(ErrorKind::kInput, "'" + source + "': invalid JSON: " + what);
  }
  if (!duplicate.empty()) {
    throw Error(ErrorKind::kInput,
                "'" + source + "': key '" + duplicate + "' appears twice in one object");
  }
  return j;
}

std::string read_whole_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorKind::kIo, "cannot open '" + path.string() + "': " + std::strerror(errno));
  std::string out;
  char buf[65536];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::kIo, "cannot read '" + path.string() + "': " + std::strerror(err));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
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

void parse_hf(Checker& c, const json& j, size_t num_tensors, HfSource& hf) {
  const std::string ptr = "/hugging_face";
  if (!c.object(j, ptr, {"model_type", "container", "model_layers", "tensors", "files"})) return;
  hf.model_type = c.string(j, "model_type", ptr).value_or("");
  hf.container = c.string(j, "container", ptr).value_or("");
  if (j.contains("model_layers")) {
    const json& layers = j.at("model_layers");
    if (!layers.is_array()) c.add(ptr + "/model_layers", "expected an array of layer numbers");
    for (size_t i = 0; layers.is_array() && i < layers.size(); ++i) {
      if (!layers[i].is_number_integer() || layers[i].get<int64_t>() < 0 ||
          layers[i].get<int64_t>() > kMaxI32 ||
          (i > 0 && layers[i].get<int64_t>() <= layers[i - 1].get<int64_t>())) {
        c.add(ptr + "/model_layers/" + std::to_string(i),
              "expected ascending non-negative layer numbers, got " + layers[i].dump());
        continue;
      }
      hf.model_layers.push_back(layers[i].get<int32_t>());
    }
  }
  if (j.contains("tensors")) {
    const json& tensors = j.at("tensors");
    if (!tensors.is_array() || tensors.size() != num_tensors) {
      c.add(ptr + "/tensors",
            "expected one entry per tensor (" + std::to_string(num_tensors) + ")");
    }
    for (size_t i = 0; tensors.is_array() && i < tensors.size(); ++i) {
      const std::string at = ptr + "/tensors/" + std::to_string(i);
      if (!c.object(tensors[i], at, {"hf_template", "stacked", "shape"})) continue;
      HfTensor t;
      t.hf_template = c.string(tensors[i], "hf_template", at).value_or("");
      if (t.hf_template.find("{L}") == std::string::npos) {
        c.add(at + "/hf_template", "expected a name holding {L}");
      }
      const json& stacked = tensors[i].contains("stacked") ? tensors[i].at("stacked") : json();
      if (!stacked.is_boolean()) c.add(at + "/stacked", "expected true or false");
      t.stacked = stacked.is_boolean() && stacked.get<bool>();
      const json& shape = tensors[i].contains("shape") ? tensors[i].at("shape") : json();
      if (!shape.is_array()) c.add(at + "/shape", "expected an array of non-negative integers");
      for (size_t d = 0; shape.is_array() && d < shape.size(); ++d) {
        if (!shape[d].is_number_integer() || shape[d].get<int64_t>() < 0) {
          c.add(at + "/shape/" + std::to_string(d), "expected a non-negative integer");
        } else {
          t.shape.push_back(shape[d].get<int64_t>());
        }
      }
      hf.tensors.push_back(std::move(t));
    }
  }
  if (j.contains("files")) {
    const json& files = j.at("files");
    if (!files.is_array()) c.add(ptr + "/files", "expected an array");
    for (size_t i = 0; files.is_array() && i < files.size(); ++i) {
      const std::string at = ptr + "/files/" + std::to_string(i);
      if (!c.object(files[i], at, {"name", "size"})) continue;
      HfFileEntry f;
      f.name = c.string(files[i], "name", at).value_or("");
      const json& size = files[i].contains("size") ? files[i].at("size") : json();
      if (!size.is_number_unsigned()) c.add(at + "/size", "expected a byte count");
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
                    "\",\n  \"version\": " + std::to_string(kVersion) + ",\n  \"tensors\": [";
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
    nlohmann::ordered_json item = {{"name", f.name}, {"size", f.size}, {"xxh3", hex16(f.xxh3)}};
    out += (i ? ",\n    " : "\n    ") + item.dump();
  }
  out += "\n  ]";
  if (m.hugging_face) out += hf_to_json(*m.hugging_face);
  return out + "\n}\n";
}

Manifest parse_manifest(const std::string& json_text, const std::string& source_name) {
  const json j = parse_rejecting_duplicates(json_text, source_name);
  Checker c(source_name);
  Manifest m;
  // "hugging_face" is optional (checkpoints made by `import`): check it like the rest.
  if (!c.object(j, "",
                j.is_object() && j.contains("hugging_face")
                    ? std::initializer_list<const char*>{"format", "version", "tensors",
                                                         "placement", "files", "hugging_face"}
                    : std::initializer_list<const char*>{"format", "version", "tensors",
                                                         "placement", "files"})) {
    c.throw_if_any();
  }
  if (auto format = c.string(j, "format", ""); format && *format != kFormat) {
    c.add("/format", "expected \"" + std::string(kFormat) + "\", got \"" + *format + "\"");
  }
  if (auto version = c.integer(j, "version", "", 0, kMaxI32); version && *version != kVersion) {
    c.add("/version",
          "version " + std::to_string(*version) + " is not supported (this build reads version 1)");
  }
  if (j.contains("tensors")) {
    const json& tensors = j.at("tensors");
    if (!tensors.is_array() || tensors.empty()) c.add("/tensors", "expected a non-empty array");
    std::set<std::string> seen;
    for (size_t i = 0; tensors.is_array() && i < tensors.size(); ++i) {
      auto spec = parse_tensor(c, tensors[i], "/tensors/" + std::to_string(i), seen);
      if (spec) m.tensors.push_back(std::move(*spec));
    }
  }
  if (j.contains("placement")) parse_placement_obj(c, j.at("placement"), m.placement);
  if (j.contains("files")) parse_files(c, j.at("files"), m.placement.ep_size, m.files);
  if (j.contains("hugging_face")) {
    m.hugging_face.emplace();
    parse_hf(c, j.at("hugging_face"), m.tensors.size(), *m.hugging_face);
  }
  c.throw_if_any();
  return m;
}

Manifest load_manifest(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kManifestName;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error(ErrorKind::kInput, "'" + dir.string() + "' is not a complete eplb checkpoint: '" +
                                       path.string() + "' does not exist");
  }
  return parse_manifest(read_whole_file(path), path.string());
}

FileEntry describe_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorKind::kIo, "cannot open '" + path.string() + "': " + std::strerror(errno));
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                 XXH3_freeState);
  XXH3_64bits_reset(state.get());
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
    XXH3_64bits_update(state.get(), buf.get(), static_cast<size_t>(n));
    entry.size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  entry.xxh3 = XXH3_64bits_digest(state.get());
  return entry;
}

}  // namespace eplb::io
