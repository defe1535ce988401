// `export`: our checkpoint (made by `import`, then rebalanced any number of times) -> the
// Hugging Face checkpoint it came from, file for file.
//
// load (manifest, HF base headers) -> check the base is the one imported -> choose one
// source slot per logical expert, refusing replicas that disagree -> each process rebuilds
// its share of the safetensors files front to back (same header; non-expert tensors from
// the base; expert rows read one by one from the shards, checked against their recorded
// xxh3; O_DIRECT both ways) -> rank 0 copies the small
// files -> rename staging into place.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "eplb/core/clock.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/direct_io.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/hf/model.hpp"
#include "eplb/hf/safetensors.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/checkpoint_output.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/runtime/deadline.hpp"
#include "eplb/tools/hf_io.hpp"

namespace eplb::tools {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorKind;
using eplb::fs::DirectReader;
using eplb::fs::SequentialWriter;
using eplb::fs::WriteBuffers;

struct Slot {
  int32_t ep_rank = -1;
  int32_t row = -1;
};

// What an HF tensor of the base is, if it is an expert tensor.
struct ExpertPiece {
  int32_t layer_idx = 0;  // MoE layer (placement layer)
  size_t tensor_idx = 0;
  int32_t expert_id = -1;  // -1: stacked, every expert
};

struct Checkpoint {
  io::Manifest manifest;
  std::optional<hf::ModelFiles> base;
  std::map<std::string, ExpertPiece, std::less<>> pieces;  // HF name -> piece
  // sums[rank][layer][tensor][row]
  std::vector<std::vector<std::vector<std::vector<uint64_t>>>> sums;
  std::vector<std::vector<Slot>> source;  // [layer][expert] -> the slot taken
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// The base must be the HF checkpoint the shards came from: same files, same sizes, and
// every expert tensor where the manifest says, with the recorded dtype and shape.
void check_base(const ExportOptions& options, Checkpoint& ck, core::ProblemList& problems) {
  const io::HfSource& src = *ck.manifest.hugging_face;
  const std::string base = core::quoted(options.hf_base);
  std::map<std::string, uint64_t> have;
  for (const auto& f : ck.base->files()) have[f.path().filename().string()] = f.file_size();
  std::map<std::string, uint64_t> want;
  for (const auto& f : src.files) want[f.name] = f.size;
  for (const auto& [name, size] : want) {
    auto it = have.find(name);
    if (it == have.end()) {
      problems.add(base + " has no '" + name + "', which the checkpoint was imported from");
    } else if (it->second != size) {
      problems.add(base + ": '" + name + "' has " + std::to_string(it->second) +
                   " bytes, but the imported file had " + std::to_string(size) +
                   ": not the base this checkpoint was imported from");
    }
  }
  for (const auto& [name, size] : have) {
    if (want.count(name) == 0) {
      problems.add(base + ": '" + name + "' was not part of the imported checkpoint");
    }
  }
  if (!problems.empty()) return;
  const auto& p = ck.manifest.placement;
  if (src.model_layers.size() != static_cast<size_t>(p.num_layers())) {
    problems.add("'" + options.checkpoint.string() + "': the manifest lists " +
                 std::to_string(src.model_layers.size()) + " model layers for " +
                 std::to_string(p.num_layers()) + " placement layers");
    return;
  }
  for (size_t t = 0; t < src.tensors.size(); ++t) {
    const io::HfTensor& ht = src.tensors[t];
    const io::TensorSpec& spec = ck.manifest.tensors[t];
    for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
      const int32_t model_layer = src.model_layers[static_cast<size_t>(layer)];
      for (int32_t e = 0; e < (ht.stacked ? 1 : p.num_logical_experts); ++e) {
        const std::string name = hf::expand(ht.hf_template, model_layer, e);
        if (!ck.base->contains(name)) {
          problems.add(base + " has no tensor '" + name + "'");
          continue;
        }
        const auto& entry = ck.base->entry(name);
        std::vector<int64_t> shape = ht.shape;
        if (ht.stacked) shape.insert(shape.begin(), p.num_logical_experts);
        if (entry.dtype != spec.dtype || entry.shape != shape) {
          problems.add(base + ": '" + name + "' is " +
                       std::string(io::to_safetensors(entry.dtype)) + " " +
                       shape_text(entry.shape) + ", the checkpoint holds " +
                       std::string(io::to_safetensors(spec.dtype)) + " " + shape_text(shape));
          continue;
        }
        ck.pieces[name] = {layer, t, ht.stacked ? -1 : e};
      }
    }
  }
}

// Collective. Every shard against its manifest entry before HDF5 opens it anywhere (every
// process then reads every shard's ids and checksums): each shard is checked by one
// process (EP rank % processes), its size and, up to io::kCheapFileBytes, its whole-file
// xxh3, so the job reads each once and a problem is printed once. Throws on every process
// if any shard differs.
void check_shard_files(const runtime::MpiSession& session, const ExportOptions& options,
                       const Checkpoint& ck) {
  core::ProblemList problems(ErrorKind::kInput);
  const auto& files = ck.manifest.files;
  for (size_t rank = 0; rank < files.size(); ++rank) {
    if (rank % static_cast<size_t>(session.size()) != static_cast<size_t>(session.rank())) {
      continue;
    }
    job::capture(problems, [&] {
      io::check_file_entry(options.checkpoint / io::shard_file_name(static_cast<int32_t>(rank)),
                           files[rank], io::kCheapFileBytes, problems);
    });
  }
  job::agree(session.group(), problems, "checking the shards against the manifest");
}

// Every shard's logical ids (checked against the manifest) and recorded checksums.
// HDF5 parses each shard's metadata here first: bounded by --timeout (`timeout`), since a
// damaged file can make its parser loop for good.
void read_sums(const ExportOptions& options, std::chrono::milliseconds timeout, Checkpoint& ck,
               core::ProblemList& problems) {
  const auto& p = ck.manifest.placement;
  ck.sums.resize(static_cast<size_t>(p.ep_size));
  for (int32_t rank = 0; rank < p.ep_size; ++rank) {
    job::capture(problems, [&] {
      const fs::path path = options.checkpoint / io::shard_file_name(rank);
      const runtime::StuckGuard guard(timeout, fmt::format("opening '{}'", path.string()));
      io::ShardReader reader(path);
      if (!(reader.info().tensors == ck.manifest.tensors)) {
        problems.add("'" + reader.path().string() + "': tensors differ from the manifest");
        return;
      }
      auto& mine = ck.sums[static_cast<size_t>(rank)];
      for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
        const auto ids = reader.read_logical_ids(layer);
        for (int32_t row = 0; row < p.num_slots_per_rank; ++row) {
          const int32_t want = p.expert_at(layer, rank, row);
          if (ids[static_cast<size_t>(row)] != want) {
            problems.add("'" + reader.path().string() + "' layer " + std::to_string(layer) +
                         ", row " + std::to_string(row) + ": holds logical expert " +
                         std::to_string(ids[static_cast<size_t>(row)]) +
                         " but the manifest places " + std::to_string(want) + " there");
          }
        }
        mine.emplace_back();
        for (size_t t = 0; t < ck.manifest.tensors.size(); ++t) {
          mine.back().push_back(reader.read_checksums(layer, t));
        }
      }
    });
  }
}

// One source slot per (layer, logical expert): the lowest; every replica must match it.
void choose_sources(Checkpoint& ck, core::ProblemList& problems) {
  const auto& p = ck.manifest.placement;
  const auto& src = *ck.manifest.hugging_face;
  ck.source.assign(static_cast<size_t>(p.num_layers()),
                   std::vector<Slot>(static_cast<size_t>(p.num_logical_experts)));
  for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
    auto& sources = ck.source[static_cast<size_t>(layer)];
    const int32_t model_layer = src.model_layers[static_cast<size_t>(layer)];
    for (int32_t rank = 0; rank < p.ep_size; ++rank) {
      for (int32_t row = 0; row < p.num_slots_per_rank; ++row) {
        const int32_t e = p.expert_at(layer, rank, row);
        if (e < 0) continue;
        Slot& first = sources[static_cast<size_t>(e)];
        if (first.ep_rank < 0) {
          first = {rank, row};
          continue;
        }
        const auto& a = ck.sums[static_cast<size_t>(first.ep_rank)][static_cast<size_t>(layer)];
        const auto& b = ck.sums[static_cast<size_t>(rank)][static_cast<size_t>(layer)];
        for (size_t t = 0; t < a.size(); ++t) {
          const uint64_t x = a[t][static_cast<size_t>(first.row)];
          const uint64_t y = b[t][static_cast<size_t>(row)];
          if (x != y) {
            problems.add(fmt::format(
                "layer {} (model layer {}), logical expert {}: replicas differ in tensor '{}': "
                "EP rank {} slot {} has xxh3 {:016x}, EP rank {} slot {} has {:016x}",
                layer, model_layer, e, ck.manifest.tensors[t].name, first.ep_rank,
                first.ep_rank * p.num_slots_per_rank + first.row, x, rank,
                rank * p.num_slots_per_rank + row, y));
            break;
          }
        }
      }
    }
    for (size_t e = 0; e < sources.size(); ++e) {
      if (sources[e].ep_rank < 0) {
        problems.add(
            fmt::format("layer {} (model layer {}): logical expert {} is in no slot, "
                        "so the checkpoint does not hold its weights",
                        layer, model_layer, e));
      }
    }
  }
}

constexpr size_t kCopyChunk = size_t{16} << 20;

// A shard as export reads it: HDF5 for where the rows are, O_DIRECT reads of exactly the
// source rows (never a whole [slots, ...] dataset when the layout allows).
struct ShardSource {
  io::ShardReader reader;
  DirectReader direct;
  std::map<std::pair<int32_t, size_t>, std::optional<uint64_t>> offsets;  // (layer, tensor)
  std::vector<std::byte> whole;  // a non-contiguous dataset, read through HDF5
  std::pair<int32_t, size_t> whole_key{-1, 0};

  explicit ShardSource(const fs::path& path) : reader(path), direct(path) {}

  // The bytes of one row, checked against its recorded xxh3 by the caller.
  std::span<const std::byte> row(int32_t layer, size_t t, int32_t row) {
    const size_t row_bytes = reader.info().tensors[t].row_bytes();
    auto [it, added] = offsets.try_emplace({layer, t});
    if (added) it->second = reader.tensor_offset(layer, t);
    if (it->second) {
      return direct.read(*it->second + row_bytes * static_cast<uint64_t>(row), row_bytes);
    }
    if (whole_key != std::pair{layer, t}) {
      whole.resize(row_bytes * static_cast<size_t>(reader.info().num_slots_per_rank));
      reader.read_tensor(layer, t, whole);
      whole_key = {layer, t};
    }
    return {whole.data() + row_bytes * static_cast<size_t>(row), row_bytes};
  }
};

// One output file, front to back: its header as in the base, non-expert tensors copied
// from the base, each expert row read from its source shard slot and checked against the
// slot's recorded xxh3. Reads and writes bypass the page cache, and the writes of one
// chunk overlap the reads of the next (SequentialWriter).
// Returns the tensor bytes read (from the base and the shards).
uint64_t write_file(const ExportOptions& options, const Checkpoint& ck,
                    const hf::SafetensorsFile& in, const fs::path& out_path,
                    std::map<int32_t, ShardSource>& shards, WriteBuffers& buffers) {
  const auto& p = ck.manifest.placement;
  const std::string prefix = in.raw_prefix();
  SequentialWriter writer(out_path, in.file_size(), buffers);
  writer.append(std::as_bytes(std::span(prefix.data(), prefix.size())));
  DirectReader base(in.path());
  std::vector<const hf::TensorEntry*> entries;
  for (const auto& entry : in.header().tensors) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(),
            [](const auto* a, const auto* b) { return a->data_begin < b->data_begin; });
  for (const hf::TensorEntry* entry : entries) {
    // The strict parser refuses gaps and overlaps: every byte is written once, in order.
    EPLB_ASSERT(entry->data_begin == writer.written());
    auto piece = ck.pieces.find(entry->name);
    if (piece == ck.pieces.end()) {
      for (uint64_t at = 0; at < entry->num_bytes; at += kCopyChunk) {
        const auto n = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, entry->num_bytes - at));
        writer.append(base.read(entry->data_begin + at, n));
      }
      continue;
    }
    const ExpertPiece& x = piece->second;
    const int32_t first = x.expert_id < 0 ? 0 : x.expert_id;
    const int32_t last = x.expert_id < 0 ? p.num_logical_experts : x.expert_id + 1;
    for (int32_t e = first; e < last; ++e) {
      const Slot s = ck.source[static_cast<size_t>(x.layer_idx)][static_cast<size_t>(e)];
      auto it = shards.find(s.ep_rank);
      if (it == shards.end()) {
        it = shards.try_emplace(s.ep_rank, options.checkpoint / io::shard_file_name(s.ep_rank))
                 .first;
      }
      const auto bytes = it->second.row(x.layer_idx, x.tensor_idx, s.row);
      const auto& sums =
          ck.sums[static_cast<size_t>(s.ep_rank)][static_cast<size_t>(x.layer_idx)][x.tensor_idx];
      if (io::checksum(bytes) != sums[static_cast<size_t>(s.row)]) {
        throw Error(ErrorKind::kInput,
                    fmt::format("'{}' layer {}, slot {}, tensor '{}': bytes do not match their "
                                "recorded xxh3",
                                it->second.reader.path().string(), x.layer_idx,
                                s.ep_rank * p.num_slots_per_rank + s.row,
                                ck.manifest.tensors[x.tensor_idx].name));
      }
      writer.append(bytes);
    }
  }
  writer.finish();
  return in.file_size() - prefix.size();
}

// Which files this process writes: the largest first, each to the process with the fewest
// bytes so far (ties: the lowest rank); the same on every process.
std::vector<size_t> my_files(const std::vector<hf::SafetensorsFile>& files, int rank, int size) {
  std::vector<size_t> order(files.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return files[a].file_size() > files[b].file_size(); });
  std::vector<uint64_t> load(static_cast<size_t>(size), 0);
  std::vector<size_t> mine;
  for (size_t i : order) {
    const auto least =
        static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[least] += files[i].file_size();
    if (least == static_cast<size_t>(rank)) mine.push_back(i);
  }
  return mine;
}

// The small files (config.json, tokenizer, index, ...): regular files at the top level that
// are not safetensors files. Subdirectories are left out.
void copy_small_files(const fs::path& base, const fs::path& staging) {
  for (const auto& item : fs::directory_iterator(base)) {
    if (!item.is_regular_file() || item.path().extension() == ".safetensors") continue;
    if (item.path().filename().string().starts_with(".")) continue;
    fs::copy_file(item.path(), staging / item.path().filename());
    eplb::fs::fsync_path(staging / item.path().filename());
  }
}

}  // namespace

HfReport export_hf(const runtime::MpiSession& session, const ExportOptions& options) {
  const auto start = core::Clock::now();
  // Every process reads the shards and the base: on several hosts they must all see them.
  job::check_shared_directories(session, {{options.checkpoint, "input directory", true},
                                          {options.hf_base, "Hugging Face base directory", true}});
  // Load and check: identical on every process; rank 0 prints.
  Checkpoint ck;
  core::ProblemList problems(ErrorKind::kInput);
  job::capture(problems, [&] {
    ck.manifest = io::load_manifest(options.checkpoint);
    if (!ck.manifest.hugging_face) {
      throw Error(ErrorKind::kInput, "'" + options.checkpoint.string() +
                                         "' was not made by `import`: its manifest has no "
                                         "hugging_face section");
    }
    ck.base.emplace(hf::load_index(options.hf_base));
    check_base(options, ck, problems);
  });
  job::agree_identical(session.group(), problems, "checking the inputs");
  check_shard_files(session, options, ck);
  read_sums(options, session.timeout(), ck, problems);
  if (problems.empty()) choose_sources(ck, problems);
  job::agree_identical(session.group(), problems, "checking the inputs");

  // Stage: every host must see the output's parent; rank 0 takes ownership of the output
  // name (lock, recovery of a dead run's leftovers) and creates the staging directory next
  // to it, removed unless committed. The safetensors files are rebuilt at their base sizes:
  // they must fit.
  uint64_t base_bytes = 0;
  for (const auto& file : ck.base->files()) base_bytes += file.file_size();
  job::CheckpointOutput output(session, {options.output,
                                         false,
                                         {base_bytes, ck.base->files().size()},
                                         "the Hugging Face checkpoint",
                                         "",
                                         options.hf_base});
  const fs::path& staging = output.staging();

  // Write: process p rebuilds files p, p + size, ... of the base.
  HfReport report;
  core::ProblemList write_problems(ErrorKind::kIo);
  job::capture(write_problems, [&] {
    std::map<int32_t, ShardSource> shards;
    WriteBuffers buffers;
    const auto& files = ck.base->files();
    for (size_t i : my_files(files, session.rank(), session.size())) {
      const fs::path out = staging / files[i].path().filename();
      report.bytes_read +=
          static_cast<long long>(write_file(options, ck, files[i], out, shards, buffers));
      report.bytes_written += static_cast<long long>(files[i].file_size());
    }
  });
  job::agree(session.group(), write_problems, "writing the files");

  // Commit: the small files, a check that the result reads as a HF checkpoint, rename.
  output.commit_directory([&](const fs::path& dir) {
    copy_small_files(options.hf_base, dir);
    hf::load_index(dir);
  });
  const auto totals = runtime::all_sum(session.group(), {report.bytes_written, report.bytes_read},
                                       "the report's totals");
  report.bytes_written = totals[0];
  report.bytes_read = totals[1];
  report.num_files = static_cast<int32_t>(ck.base->files().size());
  report.num_moe_layers = ck.manifest.placement.num_layers();
  report.num_logical_experts = ck.manifest.placement.num_logical_experts;
  report.seconds = core::seconds_since(start);
  return report;
}

}  // namespace eplb::tools
