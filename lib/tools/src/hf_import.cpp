// `import`: a Hugging Face checkpoint -> our sharded HDF5 checkpoint for a placement.
//
// load (index headers, config.json, placement) -> map the model -> check the placement
// against it -> each process writes its shards, reading each expert's bytes once per shard
// with O_DIRECT pread (the next layer read while this one is written) -> commit (manifest with the
// Hugging Face section, then rename).
#include <cmath>
#include <cstring>
#include <future>
#include <map>
#include <optional>

#include "eplb/core/clock.hpp"
#include "eplb/core/input_file.hpp"
#include "eplb/core/json_reader.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/direct_io.hpp"
#include "eplb/hf/model.hpp"
#include "eplb/hf/safetensors.hpp"
#include "eplb/io/shard.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/checkpoint_output.hpp"
#include "eplb/job/figures.hpp"
#include "eplb/job/shared_dirs.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/tools/hf_io.hpp"

namespace eplb::tools {
namespace {

namespace fs = std::filesystem;
using core::ErrorKind;
using eplb::fs::AlignedBytes;
using eplb::fs::DirectReader;

// config.json, or null when there is none (allowed with --experts).
nlohmann::json read_config(const fs::path& hf_dir, bool required) {
  const fs::path path = hf_dir / "config.json";
  std::error_code ec;
  if (!required && !fs::exists(path, ec)) return nullptr;
  core::json::Reporter report(path.string());
  auto config = core::json::parse_document(core::read_input_file(path, "model config"), report);
  report.throw_if_any();
  return config;
}

struct Model {
  std::optional<hf::ModelFiles> files;
  hf::ModelMap map;
};

// Fills `model` in place: ModelFiles' lookup points into its own files.
void load_model(const ImportOptions& options, Model& model) {
  model.files.emplace(hf::load_index(options.hf_dir));
  hf::Catalog catalog;
  for (const auto& file : model.files->files()) {
    for (const auto& t : file.header().tensors) {
      catalog[t.name] = {t.dtype, t.shape, file.path().filename().string()};
    }
  }
  const auto config = read_config(options.hf_dir, options.experts_pattern.empty());
  model.map = hf::map_model(config, catalog, options.experts_pattern, options.hf_dir.string());
}

std::string layer_list(const std::vector<int32_t>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size() && i < 8; ++i)
    out += (i ? ", " : "") + std::to_string(layers[i]);
  return layers.size() > 8 ? out + ", ..." : out;
}

// The placement must cover the model exactly: one placement layer per MoE layer, the
// model's expert count, and every logical expert in some slot of every layer.
void check_placement(const placement::Placement& p, const hf::ModelMap& map,
                     const ImportOptions& options, core::ProblemList& problems) {
  const std::string name = "placement '" + options.placement.string() + "'";
  const auto num_moe = static_cast<int32_t>(map.model_layers.size());
  if (p.num_layers() != num_moe) {
    problems.add(name + " has " + std::to_string(p.num_layers()) + " layers, but '" +
                 options.hf_dir.string() + "' has " + std::to_string(num_moe) +
                 " MoE layers (model layers " + layer_list(map.model_layers) + ")");
  }
  if (p.num_logical_experts != map.num_logical_experts) {
    problems.add(name + " has " + std::to_string(p.num_logical_experts) +
                 " logical experts, but '" + options.hf_dir.string() + "' has " +
                 std::to_string(map.num_logical_experts) + " routed experts per MoE layer");
    return;
  }
  for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
    std::vector<bool> held(static_cast<size_t>(p.num_logical_experts), false);
    for (int32_t id : p.physical_to_logical_map[static_cast<size_t>(layer)]) {
      if (id >= 0) held[static_cast<size_t>(id)] = true;
    }
    for (size_t e = 0; e < held.size(); ++e) {
      if (!held[e]) {
        problems.add(name + " layer " + std::to_string(layer) + ": logical expert " +
                     std::to_string(e) + " is in no slot; its weights would be lost");
        break;
      }
    }
  }
}

// One layer of one shard, staged: per tensor its [slots, row_bytes] rows (aligned, reused
// from layer to layer) and their checksums.
struct LayerRows {
  std::vector<AlignedBytes> rows;
  std::vector<std::vector<uint64_t>> sums;
  long long bytes_read = 0;  // from the HF files, since this staging was made
};

// The HF files, read with O_DIRECT (eplb/engine/direct_io.hpp), one reader per file.
using HfReaders = std::map<fs::path, DirectReader>;

// Stages one layer of one shard: each distinct expert read once from the HF files (only its
// bytes), replicas copied, checksums taken while the bytes are hot. Touches no HDF5, so it
// runs on a thread while the previous layer is written.
void fill_layer(const Model& model, const placement::Placement& p, int32_t ep_rank,
                int32_t layer_idx, HfReaders& readers, LayerRows& out) {
  const auto num_rows = static_cast<size_t>(p.num_slots_per_rank);
  const auto& map_row = p.physical_to_logical_map[static_cast<size_t>(layer_idx)];
  std::span<const int32_t> ids(map_row.data() + static_cast<size_t>(ep_rank) * num_rows, num_rows);
  const int32_t model_layer = model.map.model_layers[static_cast<size_t>(layer_idx)];
  const auto specs = model.map.specs();
  out.rows.resize(specs.size());
  out.sums.resize(specs.size());
  for (size_t t = 0; t < specs.size(); ++t) {
    const size_t bytes = specs[t].row_bytes();
    out.rows[t].resize(bytes * num_rows);
    out.sums[t].clear();
    std::byte* base = out.rows[t].data();
    std::map<int32_t, size_t> first_row;  // logical expert -> row already read
    for (size_t row = 0; row < num_rows; ++row) {
      std::span<std::byte> dst(base + bytes * row, bytes);
      const int32_t e = ids[row];
      if (e < 0) {
        std::memset(dst.data(), 0, bytes);
      } else if (auto it = first_row.find(e); it != first_row.end()) {
        std::memcpy(dst.data(), base + bytes * it->second, bytes);
      } else {
        const std::string name = model.map.hf_name(t, model_layer, e);
        const auto& file = model.files->file_of(name);
        const auto& entry = model.files->entry(name);
        const uint64_t offset = model.map.tensors[t].stacked ? bytes * static_cast<uint64_t>(e) : 0;
        EPLB_ASSERT(offset + bytes <= entry.num_bytes);
        auto reader = readers.find(file.path());
        if (reader == readers.end()) reader = readers.try_emplace(file.path(), file.path()).first;
        const auto src = reader->second.read(entry.data_begin + offset, bytes);
        std::memcpy(dst.data(), src.data(), bytes);
        out.bytes_read += static_cast<long long>(bytes);
        first_row.emplace(e, row);
      }
      out.sums[t].push_back(io::checksum(dst));
    }
  }
}

// One shard: layer l + 1 is read (on a thread) while layer l is written.
// Returns the bytes read from the HF files.
long long write_shard(const Model& model, const placement::Placement& p, int32_t ep_rank,
                      io::ShardWriter& writer) {
  const auto num_rows = static_cast<size_t>(p.num_slots_per_rank);
  const auto specs = model.map.specs();
  HfReaders readers;
  LayerRows staged[2];
  const auto fill = [&](int32_t layer) {
    return std::async(std::launch::async, [&, layer] {
      fill_layer(model, p, ep_rank, layer, readers, staged[layer % 2]);
    });
  };
  std::future<void> next = p.num_layers() > 0 ? fill(0) : std::future<void>();
  for (int32_t layer = 0; layer < p.num_layers(); ++layer) {
    next.get();
    if (layer + 1 < p.num_layers()) next = fill(layer + 1);
    const LayerRows& rows = staged[layer % 2];
    std::vector<std::span<const std::byte>> views;
    for (size_t t = 0; t < specs.size(); ++t) {
      views.emplace_back(rows.rows[t].data(), specs[t].row_bytes() * num_rows);
    }
    const auto& map_row = p.physical_to_logical_map[static_cast<size_t>(layer)];
    std::span<const int32_t> ids(map_row.data() + static_cast<size_t>(ep_rank) * num_rows,
                                 num_rows);
    writer.write_layer(layer, ids, views, rows.sums);
  }
  return staged[0].bytes_read + staged[1].bytes_read;
}

io::HfSource describe_source(const Model& model) {
  io::HfSource src;
  src.model_type = model.map.model_type;
  src.container = model.map.container;
  src.model_layers = model.map.model_layers;
  for (const auto& t : model.map.tensors)
    src.tensors.push_back({t.hf_template, t.stacked, t.shape});
  for (const auto& file : model.files->files()) {
    src.files.push_back({file.path().filename().string(), file.file_size()});
  }
  return src;
}

// --force replaces only a checkpoint of ours, never the HF input under any alias.
void check_output(const ImportOptions& options, core::ProblemList& problems) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(options.output, ec))) return;
  const std::string out = core::quoted(options.output);
  if (fs::equivalent(options.output, options.hf_dir, ec)) {
    problems.add("output " + out + " is the Hugging Face input directory");
  } else if (options.force && !fs::exists(options.output / io::kManifestName, ec)) {
    problems.add("output " + out + " is not an eplb checkpoint (no " +
                 std::string(io::kManifestName) + "): --force replaces only those");
  }
}

// The new checkpoint's identity: what its bytes depend on, the HF files (names, sizes),
// the tensors and the placement.
std::string identity_of(const std::vector<io::TensorSpec>& specs, const placement::Placement& p,
                        const io::HfSource& source) {
  std::string identity = "import\n" + io::to_string(specs) + "\n" + placement::to_json(p);
  for (const auto& file : source.files) {
    identity += file.name + " " + std::to_string(file.size) + "\n";
  }
  return identity;
}

// Collective: the model and the placement, each checked against the other (problems
// printed by rank 0, the same on every rank), then the output (kUsage).
void load_and_check(const runtime::MpiSession& session, const ImportOptions& options, Model& model,
                    placement::Placement& p) {
  core::ProblemList problems(ErrorKind::kInput);
  const bool model_ok = job::capture(problems, [&] { load_model(options, model); });
  const bool placement_ok = job::capture(problems, [&] {
    placement::ParseOptions parse{options.placement.string(), options.ep_size, {}, {}, {}};
    // The model's numbering reads a placement numbered by model layer (SGLang's row per
    // hidden layer, TensorRT-LLM's keys) and is recorded with it.
    if (model_ok) {
      parse.model_layers =
          placement::ModelLayers{model.map.model_layers, model.map.num_hidden_layers,
                                 "--hf '" + options.hf_dir.string() + "'"};
    }
    p = placement::load_placement(options.placement, parse);
  });
  if (model_ok && placement_ok) check_placement(p, model.map, options, problems);
  job::agree_identical(session.group(), problems, "checking the inputs");
  core::ProblemList usage(ErrorKind::kUsage);
  check_output(options, usage);
  job::agree_identical(session.group(), usage, "checking the output");
  core::log::info("'{}': {} model, {} MoE layers (model layers {}), {} experts, {} tensors each",
                  options.hf_dir.string(),
                  model.map.model_type.empty() ? "--experts" : model.map.model_type,
                  model.map.model_layers.size(), layer_list(model.map.model_layers),
                  model.map.num_logical_experts, model.map.tensors.size());
}

}  // namespace

HfReport import_hf(const runtime::MpiSession& session, const ImportOptions& options) {
  const auto start = core::Clock::now();
  // Every process reads the Hugging Face files: on several hosts they must all see them.
  job::check_shared_directories(session, {{options.hf_dir, "Hugging Face input directory", true}});
  // Load and validate: every process finds the same problems; rank 0 prints them.
  Model model;
  placement::Placement p;
  load_and_check(session, options, model, p);

  // Write: process p writes the shards of EP ranks p, p + size, ...
  const auto specs = model.map.specs();
  const io::HfSource source = describe_source(model);
  // Rank 0 publishes what every rank writes: on several hosts they must share the output
  // (checked by CheckpointOutput).
  job::CheckpointOutput output(
      session, {options.output, options.force,
                io::checkpoint_space(specs, p.ep_size, p.num_layers(), p.num_slots_per_rank),
                "the new checkpoint", identity_of(specs, p, source), std::nullopt});
  HfReport report;
  HfReport::Phases phases;
  phases.setup = core::seconds_since(start);
  const auto write_start = core::Clock::now();
  std::vector<job::WrittenShard> my_files;
  core::ProblemList write_problems(ErrorKind::kIo);
  job::capture(write_problems, [&] {
    for (int32_t rank = session.rank(); rank < p.ep_size; rank += session.size()) {
      auto path = output.staging() / io::shard_file_name(rank);
      io::ShardWriter writer(path, {rank, p.ep_size, p.num_layers(), p.num_slots_per_rank, specs,
                                    output.checkpoint_id()});
      report.bytes_read += write_shard(model, p, rank, writer);
      report.bytes_written +=
          static_cast<long long>(io::expert_bytes(specs)) * p.num_slots_per_rank * p.num_layers();
      writer.close();
      my_files.push_back({path, writer.file_xxh3()});
    }
  });
  job::agree(session.group(), write_problems, "writing the shards");
  phases.write = core::seconds_since(write_start);
  const auto commit_start = core::Clock::now();

  // Commit: the manifest records where the experts came from, for export.
  output.commit(my_files, io::Manifest{specs, p, {}, {}, source});
  phases.commit = core::seconds_since(commit_start);
  HfReport::Phases slowest;
  job::RankFigures figures;
  figures.max_seconds(slowest.setup, phases.setup);
  figures.max_seconds(slowest.write, phases.write);
  figures.max_seconds(slowest.commit, phases.commit);
  figures.sum(report.bytes_written, report.bytes_written);
  figures.sum(report.bytes_read, report.bytes_read);
  figures.reduce(session.group(), "the report's phases and totals");
  report.phases = slowest;
  core::log::detail(
      "import: set-up {:.2f} s, read + write {:.2f} s, commit {:.2f} s (max over "
      "processes)",
      slowest.setup, slowest.write, slowest.commit);
  report.num_files = p.ep_size;
  report.num_moe_layers = p.num_layers();
  report.num_logical_experts = p.num_logical_experts;
  report.seconds = core::seconds_since(start);
  return report;
}

}  // namespace eplb::tools
