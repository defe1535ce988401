// What a rebalance takes (RebalanceOptions) and what it reports (RebalanceReport): the
// words shared by the copy (rebalance.hpp), the update in place (in_place.hpp) and the
// steps inside them, so that no step includes the driver that calls it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "eplb/io/manifest.hpp"
#include "eplb/job/backend.hpp"
#include "eplb/placement/elastic.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::engine {

// io::kCheapFileBytes: input shards hashed whole against the manifest on every run.
using io::kCheapFileBytes;

struct RebalanceOptions {
  // Paths, or inline JSON (placement::is_inline_json).
  std::filesystem::path old_placement;
  std::filesystem::path new_placement;
  std::filesystem::path input;
  std::filesystem::path output;
  // For placement forms without ep_size (--old-ep-size, --new-ep-size; --ep-size sets both).
  std::optional<int32_t> old_ep_size;
  std::optional<int32_t> new_ep_size;
  std::optional<placement::RankMapping> rank_mapping;  // vLLM's elastic EP (--rank-mapping)
  // The model's layers (--model-layers), for placements numbered by model layer; else the
  // input checkpoint's (an imported one records them).
  std::optional<placement::ModelLayers> model_layers;
  bool allow_dropping_experts = false;
  int32_t ranks_per_node = 0;  // 0: the real rank -> host map, as MPI reports it
  bool force = false;
  // Hash every input shard whole against the manifest, whatever its size (by default only
  // shards up to kCheapFileBytes are; sizes and identifiers are always checked).
  bool check_files = false;
  // Rebalance `input` where it lies (engine/in_place.hpp): no output, same ep_size and
  // slots per rank old and new.
  bool in_place = false;
  job::Backend backend = job::Backend::kAuto;
  // --max-staging-bytes: all the memory a process may stage layers in, its host layer
  // buffers and, with NCCL, the transport's device staging (half of it: make_disk_transport
  // passes that half on as transport.device_staging_bytes).
  size_t staging_budget_bytes = size_t{2} << 30;
  transport::TransportOptions transport;
};

// Figures for the whole job, identical on every rank (reduced over ranks).
struct RebalanceReport {
  std::string backend;
  std::string backend_reason;  // why (engine::choose_backend); rank 0's text
  int32_t num_layers = 0;
  int64_t experts_moved = 0;         // rows received over the network
  int64_t min_experts_required = 0;  // what any plan must move
  int64_t messages = 0;
  int64_t rows_copied_locally = 0;
  int64_t bytes_read = 0;          // all ranks
  int64_t bytes_written = 0;       // shard payload, all ranks
  int64_t bytes_sent = 0;          // all ranks
  int64_t busiest_rank_bytes = 0;  // max over ranks of max(sent, received)
  int64_t layer_bytes = 0;         // one layer of one shard (max of old and new)
  int64_t peak_rss_bytes = 0;      // max over ranks of the process's peak resident memory
  // --max-staging-bytes, and the most any process used of it: its layer buffers (host)
  // plus, with NCCL, the transport's device staging (a fixed half of the budget).
  int64_t staging_budget_bytes = 0;
  int64_t peak_staging_bytes = 0;
  int64_t peak_host_staging_bytes = 0;
  int64_t device_staging_bytes = 0;
  // The pipeline (smallest over processes): layers read ahead of the exchange, including
  // the one exchanged, and layers written behind it, including the one filled.
  int32_t layers_read_ahead = 0;
  int32_t layers_written_behind = 0;
  double seconds_total = 0;
  double seconds_plan = 0;
  // The main thread's set-up before the first layer: the transport's constructor, the
  // output, the layer buffers.
  double seconds_setup = 0;
  // The transport's own set-up (transport::SetupTimes; NCCL: CUDA context, device staging,
  // communicator), which runs in the background while the first layers are read: its wall
  // time and the part the main thread was held by it (in the constructor and in the first
  // exchange, whose time includes that wait), max over ranks; the part hidden behind other
  // work, min over ranks; allocating the layer buffers on the main thread (in seconds_setup;
  // NCCL page-locks them in the background unless the set-up was already done), max over
  // ranks.
  // Zeros with MPI.
  double seconds_transport_setup = 0;
  double seconds_transport_blocked = 0;
  double seconds_transport_hidden = 0;
  double seconds_host_alloc = 0;
  // Max over ranks of the time each phase took on that rank. Reading (reader thread),
  // exchanging (main thread) and writing (writer thread) overlap: they may add up to more
  // than the total.
  double seconds_read = 0;
  double seconds_exchange = 0;
  double seconds_write = 0;
  double seconds_commit = 0;
  // `run --in-place` only: where its time went, phase by phase in order (max over ranks),
  // for the report's `in_place.seconds` (docs/CLI.md).
  std::vector<std::pair<std::string, double>> in_place_phases;
  // `run --in-place` only: changed rows whose bytes were journaled, and those rolled
  // forward from a stable slot (a copy record: not journaled); the bytes journaled.
  int64_t in_place_rows_journaled = 0;
  int64_t in_place_rows_from_source = 0;
  int64_t in_place_rows_from_journaled = 0;  // of those, from a journaled row's old bytes
  int64_t in_place_bytes_journaled = 0;
  // Where the EP ranks ran: every process's host, the node of every EP rank, and the
  // experts the plan moves between nodes (times the bytes per expert).
  std::vector<std::string> process_hosts;
  std::vector<int32_t> ep_rank_nodes;
  bool nodes_from_option = false;  // --ranks-per-node given
  int64_t inter_node_experts = 0;
  int64_t inter_node_bytes = 0;
};

}  // namespace eplb::engine
