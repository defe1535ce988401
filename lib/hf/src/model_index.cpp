// Hugging Face model directories: the index, its files, lookup by tensor name
// (eplb/hf/safetensors.hpp).
#include <algorithm>
#include <set>
#include <system_error>
#include <utility>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/hf/safetensors.hpp"

namespace eplb::hf {
namespace {

using core::Error;
using core::ErrorKind;
using core::json::describe;
using core::json::pointer_to_key;
using core::json::Reporter;
using Json = nlohmann::json;

using core::quoted;

// A file name the index may name: one plain component inside the model directory.
std::string file_name_problem(const std::string& name) {
  if (name.empty()) return "the file name is empty";
  if (name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return "file name \"" + name + "\" must be a plain file name in the model directory";
  }
  return "";
}

bool path_exists(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);  // follows links, as open() will
}

// Reads the index's weight_map and metadata into `index`.
void parse_index(const std::filesystem::path& path, Index& index, Reporter& report) {
  const std::string text = core::read_input_file(path, "safetensors index");
  const Json doc = core::json::parse_document(text, report);
  if (!doc.is_object()) {
    report.add("", "expected a JSON object with \"weight_map\", got " + describe(doc));
    report.throw_if_any();
  }
  if (doc.contains("metadata")) {
    const Json& metadata = doc["metadata"];
    if (metadata.is_object() || metadata.is_null()) {
      index.index_metadata = metadata;
    } else {
      report.add("/metadata", "expected an object, got " + describe(metadata));
    }
  }
  if (!doc.contains("weight_map") || !doc["weight_map"].is_object()) {
    report.add(doc.contains("weight_map") ? "/weight_map" : "",
               doc.contains("weight_map") ? "expected an object of tensor name -> file name, got " +
                                                describe(doc["weight_map"])
                                          : "\"weight_map\" is missing");
    report.throw_if_any();
  }
  std::set<std::string> files;
  for (const auto& [tensor, file] : doc["weight_map"].items()) {
    const std::string ptr = "/weight_map" + pointer_to_key(tensor);
    if (!file.is_string()) {
      report.add(ptr, "expected a file name, got " + describe(file));
      continue;
    }
    const std::string name = file.get<std::string>();
    if (std::string problem = file_name_problem(name); !problem.empty()) {
      report.add(ptr, problem);
      continue;
    }
    index.weight_map.emplace(tensor, name);
    files.insert(name);
  }
  if (index.weight_map.empty() && report.empty()) report.add("/weight_map", "names no tensor");
  index.files.assign(files.begin(), files.end());
}

// Opens every file of the index and checks it against the weight map.
// Index problems go to `report`, problems of the files themselves to `other`.
void check_files(const Index& index, Reporter& report, core::ProblemList& other) {
  std::map<std::string, std::string> holder;  // tensor -> first file (in name order) holding it
  for (const std::string& name : index.files) {
    const std::filesystem::path path = index.dir / name;
    std::vector<std::string> named;
    for (const auto& [tensor, file] : index.weight_map) {
      if (file == name) named.push_back(tensor);
    }
    if (!path_exists(path)) {
      report.add("", "names file '" + name + "' (for " + std::to_string(named.size()) +
                         " tensors, e.g. '" + named.front() + "'), which does not exist in " +
                         quoted(index.dir));
      continue;
    }
    std::optional<SafetensorsFile> opened;
    try {
      opened.emplace(SafetensorsFile::open(path));
    } catch (const Error& error) {
      for (const std::string& problem : error.problems()) other.add(problem);
      other.set_kind_if_worse(error.kind());
      continue;
    }
    for (const std::string& tensor : named) {
      if (!opened->find(tensor)) {
        report.add("/weight_map" + pointer_to_key(tensor),
                   "tensor '" + tensor + "' is not in '" + name + "' (which holds " +
                       std::to_string(opened->header().tensors.size()) + " tensors)");
      }
    }
    for (const TensorEntry& entry : opened->header().tensors) {
      const auto [it, inserted] = holder.emplace(entry.name, name);
      if (!inserted) {
        other.add(quoted(index.dir) + ": tensor '" + entry.name + "' is in two files, '" +
                  it->second + "' and '" + name + "'");
      }
    }
  }
}

}  // namespace

Index load_index(const std::filesystem::path& hf_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(hf_dir, ec)) {
    throw Error(ErrorKind::kInput,
                quoted(hf_dir) + ": Hugging Face model directory " +
                    (path_exists(hf_dir) ? "is not a directory" : "does not exist"));
  }
  Index index;
  index.dir = hf_dir;
  const std::filesystem::path index_path = hf_dir / kIndexFileName;
  const std::filesystem::path single_path = hf_dir / kSingleFileName;
  if (path_exists(index_path)) {
    Reporter report(index_path.string());
    parse_index(index_path, index, report);
    report.throw_if_any();
    core::ProblemList other;
    check_files(index, report, other);
    core::ProblemList all;
    all.append(report.problems());
    all.append(other);
    all.throw_if_any();
    return index;
  }
  if (!path_exists(single_path)) {
    throw Error(ErrorKind::kInput, quoted(hf_dir) + ": neither " + std::string(kIndexFileName) +
                                       " nor " + std::string(kSingleFileName) +
                                       " is there: not a Hugging Face safetensors checkpoint");
  }
  const SafetensorsFile file = SafetensorsFile::open(single_path);
  if (file.header().tensors.empty()) {
    throw Error(ErrorKind::kInput, quoted(single_path) + ": holds no tensor");
  }
  index.files = {std::string(kSingleFileName)};
  for (const TensorEntry& entry : file.header().tensors) {
    index.weight_map.emplace(entry.name, kSingleFileName);
  }
  return index;
}

ModelFiles::ModelFiles(const Index& index) : index_(index) {
  files_.reserve(index_.files.size());
  for (const std::string& name : index_.files) {
    files_.push_back(SafetensorsFile::open(index_.dir / name));
  }
  core::ProblemList problems;
  for (const auto& [tensor, file] : index_.weight_map) {
    const auto it = std::lower_bound(index_.files.begin(), index_.files.end(), file);
    if (it == index_.files.end() || *it != file) {
      problems.add(quoted(index_.dir) + ": tensor '" + tensor + "' is mapped to '" + file +
                   "', which the index's file list lacks");
      continue;
    }
    const auto file_idx = static_cast<size_t>(it - index_.files.begin());
    const TensorEntry* entry = files_[file_idx].find(tensor);
    if (!entry) {
      problems.add(quoted(files_[file_idx].path()) + ": tensor '" + tensor +
                   "' named by the index is not in the file");
      continue;
    }
    locations_.emplace(tensor, Location{file_idx, entry});
  }
  problems.throw_if_any();
}

bool ModelFiles::contains(std::string_view tensor) const {
  return locations_.find(tensor) != locations_.end();
}

const ModelFiles::Location& ModelFiles::locate(std::string_view tensor) const {
  const auto it = locations_.find(tensor);
  if (it == locations_.end()) {
    throw Error(ErrorKind::kInput, quoted(index_.dir) + ": the checkpoint has no tensor '" +
                                       std::string(tensor) + "'");
  }
  return it->second;
}

const SafetensorsFile& ModelFiles::file_of(std::string_view tensor) const {
  return files_[locate(tensor).file_idx];
}

const TensorEntry& ModelFiles::entry(std::string_view tensor) const {
  return *locate(tensor).entry;
}

}  // namespace eplb::hf
