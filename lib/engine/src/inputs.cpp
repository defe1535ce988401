#include "inputs.hpp"

#include "eplb/engine/rebalance.hpp"

#include <fmt/format.h>

#include <sys/stat.h>

#include <algorithm>

#include "eplb/core/clock.hpp"
#include "eplb/core/to_size.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/backend.hpp"
#include "eplb/runtime/deadline.hpp"

namespace eplb::engine {
namespace {

namespace fs = std::filesystem;
using placement::Placement;

// The first difference between the placement a checkpoint holds and the one the user
// says it holds, so the message points at something concrete.
std::string describe_difference(const Placement& held, const Placement& given) {
  if (held.ep_size != given.ep_size) {
    return fmt::format("ep_size {} vs {}", held.ep_size, given.ep_size);
  }
  if (held.num_slots_per_rank != given.num_slots_per_rank) {
    return fmt::format("{} vs {} slots per rank", held.num_slots_per_rank,
                       given.num_slots_per_rank);
  }
  if (held.num_layers() != given.num_layers()) {
    return fmt::format("{} vs {} layers", held.num_layers(), given.num_layers());
  }
  for (int32_t layer = 0; layer < held.num_layers(); ++layer) {
    for (int32_t slot = 0; slot < held.num_slots(); ++slot) {
      int32_t a = held.physical_to_logical_map[core::to_size(layer)][core::to_size(slot)];
      int32_t b = given.physical_to_logical_map[core::to_size(layer)][core::to_size(slot)];
      if (a != b) {
        return fmt::format(
            "layer {}, slot {}: the checkpoint holds logical expert {}, the "
            "placement says {}",
            layer, slot, a, b);
      }
    }
  }
  return fmt::format("{} vs {} logical experts", held.num_logical_experts,
                     given.num_logical_experts);
}

// Placements and manifest: identical on every rank, so rank 0 alone reports.
void load_placements(const RebalanceOptions& options, Inputs& inputs, io::Manifest& manifest,
                     core::ProblemList& problems) {
  // The manifest first: a placement without ep_size or expert count (SGLang's form, a bare
  // array, ...) takes the checkpoint's, and the new one then the old one's, unless
  // --old-ep-size / --new-ep-size / --rank-mapping say otherwise.
  bool manifest_ok = job::capture(problems, [&] { manifest = io::load_manifest(options.input); });
  const placement::PairOptions pair_options =
      pair_options_of(options, manifest_ok ? &manifest : nullptr);
  placement::PlacementPair pair;
  const bool pair_ok = job::capture(problems, [&] { pair = placement::load_pair(pair_options); });
  inputs.old_placement = pair.old_placement;
  inputs.new_placement = pair.new_placement;
  // The manifest records no model layer numbers: compare the slots only.
  if (pair_ok && manifest_ok && !placement::same_slots(manifest.placement, inputs.old_placement)) {
    problems.add(fmt::format("'{}' does not hold the old placement '{}': {}",
                             (options.input / io::kManifestName).string(), pair.old_name,
                             describe_difference(manifest.placement, inputs.old_placement)));
  }
  inputs.tensors = manifest.tensors;
}

using FileId = std::pair<dev_t, ino_t>;

// The device and inode of `path` (or of its deepest existing ancestor) and of every
// directory above it, as the kernel resolves them: ".." is followed physically, so
// symlinks, "..", bind mounts (same device and inode) are all seen through.
std::vector<FileId> identity_chain(const fs::path& path) {
  fs::path p = fs::absolute(path).lexically_normal();
  struct stat st {};
  while (::stat(p.c_str(), &st) != 0 && p.has_relative_path()) p = p.parent_path();
  std::vector<FileId> chain;
  for (int depth = 0; depth < 4096 && ::stat(p.c_str(), &st) == 0; ++depth) {
    const FileId id{st.st_dev, st.st_ino};
    if (!chain.empty() && chain.back() == id) break;  // "/.." is "/"
    chain.push_back(id);
    p /= "..";
  }
  return chain;
}

// The output must never replace, hold or land inside the input, not even with --force,
// under any alias.
void check_output_path(const RebalanceOptions& options, core::ProblemList& problems) {
  struct stat in {
  }, out{};
  const bool output_exists = ::stat(options.output.c_str(), &out) == 0;
  if (::stat(options.input.c_str(), &in) != 0) return;  // reported by the manifest check
  if (options.output.empty()) return;                   // run --in-place: no output
  const FileId input_id{in.st_dev, in.st_ino};
  const auto output_chain = identity_chain(options.output);
  const bool output_in_input =
      std::find(output_chain.begin(), output_chain.end(), input_id) != output_chain.end();
  bool input_in_output = false;
  if (output_exists) {
    const auto input_chain = identity_chain(options.input);
    input_in_output = std::find(input_chain.begin(), input_chain.end(),
                                FileId{out.st_dev, out.st_ino}) != input_chain.end();
  }
  if (output_in_input || input_in_output) {
    problems.add(
        fmt::format("output '{}' and input '{}' overlap (the same directory or one inside the "
                    "other, possibly through a symlink or a bind mount): choose an output "
                    "outside the input checkpoint",
                    options.output.string(), options.input.string()));
  }
}

void check_process_count(const runtime::MpiSession& session, const Inputs& inputs,
                         const RebalanceOptions& options) {
  int32_t needed = std::max(inputs.old_placement.ep_size, inputs.new_placement.ep_size);
  core::ProblemList problems(core::ErrorKind::kUsage);
  check_output_path(options, problems);
  if (session.size() > needed) {
    problems.add(fmt::format(
        "the placements have {} EP ranks (old ep_size {}, new ep_size {}) but the job has {} "
        "processes: start at most one process per EP rank (mpirun -np {}, or fewer)",
        needed, inputs.old_placement.ep_size, inputs.new_placement.ep_size, session.size(),
        needed));
  }
  job::agree_identical(session.group(), problems, "checking the process count and output");
}

std::string shown_id(const std::string& id) { return id.empty() ? "(none)" : id; }

// One hosted EP rank's shard against the manifest and the old placement.
void open_shard(int32_t rank, const io::Manifest& manifest, Inputs& inputs, bool check_files,
                std::chrono::milliseconds timeout, std::optional<io::ShardReader>& shard,
                core::ProblemList& problems) {
  const fs::path path = inputs.input_dir / io::shard_file_name(rank);
  // Its manifest entry first: the size always (one stat), the whole-file xxh3 when that is
  // cheap (small files, then in the page cache for the reads that follow) or asked for with
  // --check-files (one extra sequential read). A shard that differs is never given to
  // HDF5, whose parser a damaged file can crash or stall.
  if (static_cast<size_t>(rank) < manifest.files.size()) {
    bool matches = false;
    job::capture(problems, [&] {
      matches = io::check_file_entry(path, manifest.files[static_cast<size_t>(rank)],
                                     check_files ? UINT64_MAX : kCheapFileBytes, problems);
    });
    if (!matches) return;
  }
  // HDF5 from here on, bounded by --timeout: a file damaged before its manifest entry was
  // written (or together with it) can make HDF5's parser loop for good.
  const runtime::StuckGuard guard(timeout, fmt::format("opening '{}'", path.string()));
  job::capture(problems, [&] { shard.emplace(path); });
  if (!shard) return;
  const auto& info = shard->info();
  const auto& old_p = inputs.old_placement;
  auto mismatch = [&](const char* what, auto have, auto want) {
    problems.add(fmt::format("'{}': {} is {}, expected {}", path.string(), what, have, want));
  };
  if (info.ep_rank != rank) mismatch("ep_rank", info.ep_rank, rank);
  if (info.ep_size != old_p.ep_size) mismatch("ep_size", info.ep_size, old_p.ep_size);
  if (info.num_layers != old_p.num_layers())
    mismatch("num_layers", info.num_layers, old_p.num_layers());
  if (info.num_slots_per_rank != old_p.num_slots_per_rank) {
    mismatch("num_slots_per_rank", info.num_slots_per_rank, old_p.num_slots_per_rank);
  }
  if (info.tensors != manifest.tensors) {
    mismatch("the tensor list", io::to_string(info.tensors), io::to_string(manifest.tensors));
  }
  if (info.checkpoint_id != manifest.checkpoint_id) {
    problems.add(fmt::format("'{}' belongs to checkpoint {}, but '{}' describes checkpoint {}",
                             path.string(), shown_id(info.checkpoint_id),
                             (inputs.input_dir / io::kManifestName).string(),
                             shown_id(manifest.checkpoint_id)));
  }
  if (!problems.empty()) return;
  for (int32_t layer = 0; layer < info.num_layers; ++layer) {
    job::capture(problems, [&] {
      auto ids = shard->read_logical_ids(layer);
      for (int32_t row = 0; row < info.num_slots_per_rank; ++row) {
        int32_t want = old_p.expert_at(layer, rank, row);
        const int32_t id = ids[core::to_size(row)];
        if (id != want) {
          problems.add(
              fmt::format("'{}' layer {}, slot {}: holds logical expert {} but '{}' "
                          "places logical expert {} there",
                          path.string(), layer, rank * info.num_slots_per_rank + row, id,
                          "the old placement", want));
        }
      }
    });
  }
}

}  // namespace

Inputs load_inputs(const runtime::MpiSession& session, const RebalanceOptions& options) {
  Inputs inputs;
  inputs.input_dir = options.input;
  io::Manifest manifest;
  core::ProblemList problems(core::ErrorKind::kInput);
  load_placements(options, inputs, manifest, problems);
  inputs.hugging_face = manifest.hugging_face;
  inputs.input_identity = "input " + manifest.checkpoint_id + "\n";
  for (const auto& file : manifest.files) {
    inputs.input_identity +=
        file.name + " " + std::to_string(file.size) + " " + std::to_string(file.xxh3) + "\n";
  }
  job::agree_identical(session.group(), problems, "loading the placements and manifest");
  check_process_count(session, inputs, options);

  const int32_t num_ep_ranks = std::max(inputs.old_placement.ep_size, inputs.new_placement.ep_size);
  inputs.process_map = plan::ProcessMap{num_ep_ranks, session.size()};
  inputs.my_ranks = inputs.process_map.ep_ranks_of(session.rank());
  inputs.shards.resize(inputs.my_ranks.size());
  core::ProblemList shard_problems(core::ErrorKind::kInput);
  for (size_t i = 0; i < inputs.my_ranks.size(); ++i) {
    if (inputs.my_ranks[i] < inputs.old_placement.ep_size) {
      open_shard(inputs.my_ranks[i], manifest, inputs, options.check_files, session.timeout(),
                 inputs.shards[i], shard_problems);
    }
  }
  job::agree(session.group(), shard_problems, "opening the input shards");
  return inputs;
}

DiskTransport make_disk_transport(const runtime::MpiSession& session,
                                  const RebalanceOptions& options, RebalanceReport& report) {
  const size_t budget = options.staging_budget_bytes;
  // NCCL's device staging takes half of the budget; the transport's option is that half.
  transport::TransportOptions transport_options = options.transport;
  transport_options.device_staging_bytes = budget / 2;
  auto chosen =
      job::make_transport(session, options.backend, job::Workload::kDiskToDisk, transport_options);
  DiskTransport out;
  out.transport = std::move(chosen.transport);
  report.backend = std::string(out.transport->name());
  report.backend_reason = chosen.choice.reason;
  out.device_bytes =
      chosen.choice.backend == job::Backend::kNccl ? transport_options.device_staging_bytes : 0;
  out.host_budget = budget - out.device_bytes;
  report.staging_budget_bytes = static_cast<int64_t>(budget);
  report.device_staging_bytes = static_cast<int64_t>(out.device_bytes);
  return out;
}

PlannedExchange plan_exchange(const runtime::MpiSession& session, const RebalanceOptions& options,
                              const Inputs& inputs, RebalanceReport& report) {
  const auto start = core::Clock::now();
  PlannedExchange planned{
      agreed_topology(session, options.ranks_per_node, inputs.process_map.num_ep_ranks), {}, {}};
  planned.plan = plan::make_plan(inputs.old_placement, inputs.new_placement, planned.topology);
  report.seconds_plan = core::seconds_since(start);
  planned.stats = plan::summarize(planned.plan, planned.topology);
  report.experts_moved = planned.stats.experts_moved;
  report.min_experts_required = planned.stats.min_experts_required;
  report.layer_bytes =
      static_cast<int64_t>(io::expert_bytes(inputs.tensors)) *
      std::max(planned.plan.old_num_slots_per_rank, planned.plan.new_num_slots_per_rank);
  for (const auto& rank : planned.stats.ranks) report.messages += rank.messages_sent;
  return planned;
}

placement::PairOptions pair_options_of(const RebalanceOptions& options,
                                       const io::Manifest* manifest) {
  placement::PairOptions pair_options;
  pair_options.old_arg = options.old_placement.string();
  pair_options.new_arg = options.new_placement.string();
  pair_options.old_ep_size = options.old_ep_size;
  pair_options.new_ep_size = options.new_ep_size;
  pair_options.rank_mapping = options.rank_mapping;
  pair_options.allow_dropping_experts = options.allow_dropping_experts;
  pair_options.model_layers = options.model_layers;
  if (manifest != nullptr) {
    pair_options.checkpoint_ep_size = manifest->placement.ep_size;
    pair_options.checkpoint_num_logical_experts = manifest->placement.num_logical_experts;
    if (!options.model_layers && manifest->hugging_face) {
      pair_options.model_layers = placement::ModelLayers{manifest->hugging_face->model_layers, 0,
                                                         "the input checkpoint's manifest"};
    }
  }
  return pair_options;
}

}  // namespace eplb::engine
