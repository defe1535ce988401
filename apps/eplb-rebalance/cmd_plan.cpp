// `eplb-rebalance plan`: what a rebalance between two placements would move, without
// touching any weights. Every rank loads, validates and plans (no communication, the plan
// is deterministic); only rank 0 prints, through the logger.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

#include "commands.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/units.hpp"
#include "eplb/engine/rebalance.hpp"
#include "eplb/fs/publish.hpp"
#include "eplb/io/manifest.hpp"
#include "eplb/io/tensor.hpp"
#include "eplb/placement/placement.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/plan/traffic_svg.hpp"

namespace eplb::app {
namespace {

struct PlanArgs {
  PlacementArgs placements;
  int32_t ranks_per_node = 0;
  std::string rank_hosts;  // --rank-hosts: the host of each EP rank, comma-separated
  std::string svg_path;    // --svg
  std::string input;       // --input: tensor sizes from the checkpoint's manifest
  std::string tensors;     // --tensors: tensor sizes given
};

struct PlanReport {
  placement::Placement old_placement, new_placement;
  std::string old_name, new_name;
  plan::Topology topology;
  std::vector<std::string> node_names;  // per node index, when known by name
  plan::PlanStats balanced, vllm;
  double balanced_ms = 0, vllm_ms = 0;
  std::vector<io::TensorSpec> tensors;  // empty unless --input or --tensors
  int64_t bytes_per_expert = 0;
  plan::LayerTraffic traffic_bytes;  // with tensor sizes only
};

plan::Plan timed_plan(const PlanReport& r, plan::SenderPolicy policy, double& ms) {
  const auto start = std::chrono::steady_clock::now();
  plan::Plan result = plan::make_plan(r.old_placement, r.new_placement, r.topology, policy);
  ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return result;
}

// --rank-hosts "a,b,a,b": one host name per EP rank.
std::vector<std::string> split_hosts(const std::string& list) {
  std::vector<std::string> hosts;
  size_t from = 0;
  for (;;) {
    const size_t comma = list.find(',', from);
    hosts.push_back(list.substr(from, comma == std::string::npos ? comma : comma - from));
    if (comma == std::string::npos) return hosts;
    from = comma + 1;
  }
}

std::vector<std::string> names_of_nodes(const std::vector<std::string>& hosts,
                                        const std::vector<int32_t>& nodes) {
  std::vector<std::string> names;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (static_cast<size_t>(nodes[i]) == names.size()) names.push_back(hosts[i]);
  }
  return names;
}

// The node layout `run` would use: --rank-hosts or --ranks-per-node as given; else under
// mpirun the real hosts of the processes, as `run` maps EP ranks onto them; a plain
// process knows none.
void set_topology(const PlanArgs& args, const runtime::MpiSession& session, PlanReport& r) {
  const int32_t num_ep_ranks = std::max(r.old_placement.ep_size, r.new_placement.ep_size);
  if (!args.rank_hosts.empty()) {
    const auto hosts = split_hosts(args.rank_hosts);
    if (hosts.size() != static_cast<size_t>(num_ep_ranks) ||
        std::find(hosts.begin(), hosts.end(), "") != hosts.end()) {
      throw core::Error(core::ErrorKind::kUsage,
                        fmt::format("--rank-hosts names {} hosts; give one non-empty name per EP "
                                    "rank ({}), comma-separated",
                                    hosts.size(), num_ep_ranks));
    }
    r.topology.node_of_rank = plan::node_indices(hosts);
    r.node_names = names_of_nodes(hosts, r.topology.node_of_rank);
  } else if (session.size() > 1) {
    r.topology = engine::agreed_topology(session, args.ranks_per_node, num_ep_ranks);
    if (args.ranks_per_node <= 0) {
      const std::vector<int32_t> nodes(session.node_of_rank().begin(),
                                       session.node_of_rank().end());
      r.node_names = names_of_nodes(session.hosts(), nodes);
    }
  } else {
    r.topology = plan::Topology::blocks(num_ep_ranks, args.ranks_per_node);
  }
}

// "2 nodes: 0 (a) EP ranks 0 2, 1 (b) EP ranks 1 3".
std::string describe_nodes(const PlanReport& r) {
  std::vector<std::string> members(static_cast<size_t>(r.topology.num_nodes()));
  for (size_t rank = 0; rank < r.topology.node_of_rank.size(); ++rank) {
    auto& m = members[static_cast<size_t>(r.topology.node_of_rank[rank])];
    m += fmt::format("{}{}", m.empty() ? "" : " ", rank);
  }
  std::string out = fmt::format("{} node{}:", members.size(), members.size() == 1 ? "" : "s");
  for (size_t node = 0; node < members.size(); ++node) {
    out += fmt::format("{} {}{} EP ranks {}", node == 0 ? "" : ",", node,
                       node < r.node_names.size() ? fmt::format(" ({})", r.node_names[node]) : "",
                       members[node]);
  }
  return out;
}

PlanReport compute(const PlanArgs& args, const runtime::MpiSession& session) {
  PlanReport r;
  // Load and validate both placements before planning, reporting every problem.
  auto pair = placement::load_pair(pair_options(args.placements));
  r.old_placement = std::move(pair.old_placement);
  r.new_placement = std::move(pair.new_placement);
  r.old_name = std::move(pair.old_name);
  r.new_name = std::move(pair.new_name);
  set_topology(args, session, r);
  // Plan with our balanced senders and with vLLM's rule, for comparison.
  r.balanced =
      plan::summarize(timed_plan(r, plan::SenderPolicy::kBalanced, r.balanced_ms), r.topology);
  r.vllm = plan::summarize(timed_plan(r, plan::SenderPolicy::kVllm, r.vllm_ms), r.topology);
  // Bytes, not experts, when the tensors are known.
  if (!args.input.empty()) r.tensors = io::load_manifest(args.input).tensors;
  if (!args.tensors.empty()) r.tensors = io::parse_tensor_specs(args.tensors);
  if (!r.tensors.empty()) {
    r.bytes_per_expert = static_cast<int64_t>(io::expert_bytes(r.tensors));
    double ignored = 0;
    r.traffic_bytes = plan::traffic_bytes(timed_plan(r, plan::SenderPolicy::kBalanced, ignored),
                                          r.bytes_per_expert);
  }
  return r;
}

int64_t total_messages(const plan::PlanStats& stats) {
  int64_t sum = 0;
  for (const auto& rank : stats.ranks) sum += rank.messages_sent;
  return sum;
}

double ratio(int64_t a, int64_t b) {
  return b == 0 ? 1.0 : static_cast<double>(a) / static_cast<double>(b);
}

std::string rank_table(const PlanReport& r) {
  std::string out =
      fmt::format("{:>5} {:>9} {:>9} {:>11} {:>9} {:>9} {:>10} {:>7} {:>6}\n", "rank", "sent",
                  "received", "sent(vLLM)", "msgs out", "msgs in", "unchanged", "local", "empty");
  for (size_t rank = 0; rank < r.balanced.ranks.size(); ++rank) {
    const auto& s = r.balanced.ranks[rank];
    out += fmt::format("{:>5} {:>9} {:>9} {:>11} {:>9} {:>9} {:>10} {:>7} {:>6}\n", rank,
                       s.experts_sent, s.experts_received, r.vllm.ranks[rank].experts_sent,
                       s.messages_sent, s.messages_received, s.rows_unchanged, s.rows_local,
                       s.rows_empty);
  }
  return out;
}

std::string totals(const PlanReport& r) {
  const auto& b = r.balanced;
  std::string out;
  out += fmt::format("experts moved: {} (minimum the placements require: {})\n", b.experts_moved,
                     b.min_experts_required);
  out += fmt::format(
      "messages: {} (one per sender/receiver pair per layer; the vLLM pattern "
      "posts {} per-expert ops per tensor)\n",
      total_messages(b), r.vllm.experts_moved);
  out += fmt::format(
      "busiest sender, experts summed over layers: {} balanced vs {} vLLM rule "
      "({:.3f}x)\n",
      b.busiest_sender_experts, r.vllm.busiest_sender_experts,
      ratio(b.busiest_sender_experts, r.vllm.busiest_sender_experts));
  if (r.topology.known()) {
    out += fmt::format("inter-node experts ({}): {} balanced vs {} vLLM rule\n", describe_nodes(r),
                       b.inter_node_experts, r.vllm.inter_node_experts);
  }
  out += fmt::format("planning time: {:.2f} ms balanced, {:.2f} ms vLLM rule\n", r.balanced_ms,
                     r.vllm_ms);
  return out;
}

// Up to 16 ranks: the numbers. Beyond: one character per cell, '.' for nothing and a
// digit 1-9 for the share of the largest cell, so hot pairs stand out at a glance.
std::string traffic_matrix(const plan::PlanStats& stats) {
  const auto& t = stats.traffic;
  int64_t max_cell = 0;
  for (const auto& row : t)
    max_cell = std::max(max_cell, *std::max_element(row.begin(), row.end()));
  const bool compact = t.size() > 16;
  const int width =
      compact ? 1 : std::max<int>(2, static_cast<int>(fmt::format("{}", max_cell).size()));
  std::string out = compact ? fmt::format(
                                  "traffic (src row -> dst column; '.' none, digit d: up "
                                  "to d/9 of the largest cell, {} experts)\n",
                                  max_cell)
                            : "traffic (experts, src row -> dst column, summed over layers)\n";
  out += fmt::format("{:>5} ", "");
  for (size_t dst = 0; dst < t.size(); ++dst) {
    out += compact ? fmt::format("{}", dst % 10) : fmt::format(" {:>{}}", dst, width);
  }
  out += compact ? "  total\n" : "\n";
  for (size_t src = 0; src < t.size(); ++src) {
    out += fmt::format("{:>5} ", src);
    int64_t row_total = 0;
    for (int64_t cell : t[src]) {
      row_total += cell;
      if (!compact) {
        out +=
            fmt::format(" {:>{}}", cell == 0 ? std::string(".") : fmt::format("{}", cell), width);
      } else {
        out += cell == 0 ? '.' : static_cast<char>('0' + (9 * cell + max_cell - 1) / max_cell);
      }
    }
    out += compact ? fmt::format("  {}\n", row_total) : "\n";
  }
  out.pop_back();  // the logger ends the message's last line
  return out;
}

// docs/CLI.md, "Reports": the "plan" section of `plan --json`.
nlohmann::json plan_json(const PlanReport& r, const PlanArgs& args) {
  const auto& b = r.balanced;
  const auto side = [](const std::string& path, const placement::Placement& p) {
    return nlohmann::json{
        {"path", path}, {"ep_size", p.ep_size}, {"num_slots_per_rank", p.num_slots_per_rank}};
  };
  nlohmann::json ranks = nlohmann::json::array();
  for (size_t rank = 0; rank < b.ranks.size(); ++rank) {
    const auto& s = b.ranks[rank];
    ranks.push_back({{"rank", rank},
                     {"experts_sent", s.experts_sent},
                     {"experts_received", s.experts_received},
                     {"messages_sent", s.messages_sent},
                     {"messages_received", s.messages_received},
                     {"rows_unchanged", s.rows_unchanged},
                     {"rows_local", s.rows_local},
                     {"rows_empty", s.rows_empty},
                     {"experts_sent_vllm", r.vllm.ranks[rank].experts_sent}});
  }
  nlohmann::json out = {{"old", side(r.old_name, r.old_placement)},
                        {"new", side(r.new_name, r.new_placement)},
                        {"num_layers", r.old_placement.num_layers()},
                        {"ranks_per_node", args.ranks_per_node},
                        {"ep_rank_nodes", r.topology.node_of_rank},
                        {"node_names", r.node_names},
                        {"totals",
                         {{"experts_moved", b.experts_moved},
                          {"min_experts_required", b.min_experts_required},
                          {"messages", total_messages(b)},
                          {"busiest_sender_experts", b.busiest_sender_experts},
                          {"busiest_sender_experts_vllm", r.vllm.busiest_sender_experts},
                          {"inter_node_experts", b.inter_node_experts},
                          {"inter_node_experts_vllm", r.vllm.inter_node_experts},
                          {"planning_ms", r.balanced_ms},
                          {"planning_ms_vllm", r.vllm_ms}}},
                        {"ranks", std::move(ranks)},
                        {"traffic", b.traffic}};
  if (r.bytes_per_expert > 0) {
    out["bytes_per_expert"] = r.bytes_per_expert;
    out["totals"]["bytes_moved"] = b.experts_moved * r.bytes_per_expert;
  }
  return out;
}

// Rank 0 writes the picture; a file it cannot write is an I/O error.
void write_svg(const PlanReport& r, const PlanArgs& args) {
  if (!core::log::is_leader()) return;
  plan::TrafficPicture picture;
  picture.title = fmt::format("'{}' -> '{}'", r.old_name, r.new_name);
  std::string tensors;
  for (const auto& t : r.tensors) tensors += (tensors.empty() ? "" : ", ") + t.name;
  picture.subtitle =
      fmt::format("{} per expert ({}); EP ranks: {}{}",
                  core::format_bytes(static_cast<double>(r.bytes_per_expert)), tensors,
                  r.traffic_bytes.empty() ? 0 : r.traffic_bytes.front().size(),
                  r.topology.known() ? fmt::format(", {} nodes", r.topology.num_nodes())
                                     : std::string(", nodes unknown"));
  picture.node_of_rank = r.topology.node_of_rank;
  picture.node_names = r.node_names;
  picture.layers = r.traffic_bytes;
  const std::string svg = plan::render_traffic_svg(picture);
  try {
    eplb::fs::write_file_atomic(args.svg_path, svg);
  } catch (const core::Error& e) {
    throw core::with_prefix(e, fmt::format("'{}': cannot write the picture: ", args.svg_path));
  }
  core::log::info("traffic picture: '{}'", args.svg_path);
}

void print_text(const PlanReport& r) {
  core::log::info(
      "plan: '{}' (ep_size {}, {} slots per rank) -> '{}' (ep_size {}, {} slots per "
      "rank), {} layers",
      r.old_name, r.old_placement.ep_size, r.old_placement.num_slots_per_rank, r.new_name,
      r.new_placement.ep_size, r.new_placement.num_slots_per_rank, r.old_placement.num_layers());
  core::log::info("per EP rank, experts summed over layers (local = filled locally or copied):\n{}",
                  rank_table(r));
  core::log::info("{}", totals(r));
  core::log::info("{}", traffic_matrix(r.balanced));
}

}  // namespace

Subcommand add_plan_command(CLI::App& root, CommonArgs& common) {
  auto args = std::make_shared<PlanArgs>();
  auto* app = root.add_subcommand(
      "plan", "Show what a rebalance would move: per-rank traffic, minimum, busiest sender");
  add_placement_options(*app, args->placements);
  auto* per_node =
      app->add_option("--ranks-per-node", args->ranks_per_node,
                      "EP ranks per node for sender choice, as contiguous blocks "
                      "(default: under mpirun the processes' real hosts, else unknown)");
  app->add_option("--rank-hosts", args->rank_hosts,
                  "The host of each EP rank, comma-separated (e.g. a,b,a,b for --map-by node): "
                  "plan for that layout")
      ->type_name("H0,H1,...")
      ->excludes(per_node);
  app->add_option("--input", args->input,
                  "Checkpoint whose manifest gives the tensor sizes (for bytes and --svg)");
  app->add_option("--tensors", args->tensors,
                  "Per-expert tensors, name:dtype:AxB..., as for generate (for bytes and --svg; "
                  "takes precedence over --input)");
  app->add_option("--svg", args->svg_path,
                  "Draw the rank x rank bytes moved, per node and per layer, to FILE (SVG); "
                  "needs --input or --tensors")
      ->type_name("FILE");
  add_report_option(app);
  add_timeout_option(app, common);
  return {app, [args](const runtime::MpiSession& session) {
            if (!args->svg_path.empty() && args->input.empty() && args->tensors.empty()) {
              throw core::Error(core::ErrorKind::kUsage,
                                "plan --svg draws bytes: give the tensor sizes with --input "
                                "CHECKPOINT or --tensors SPEC");
            }
            job_report()["inputs"] = {{"old", args->placements.old_arg},
                                      {"new", args->placements.new_arg}};
            const PlanReport report = compute(*args, session);
            job_report()["plan"] = plan_json(report, *args);
            if (!args->svg_path.empty()) write_svg(report, *args);
            // `--json -` makes stdout one JSON object: no table then.
            if (job_report().path() != "-") print_text(report);
            return core::kExitOk;
          }};
}

}  // namespace eplb::app
