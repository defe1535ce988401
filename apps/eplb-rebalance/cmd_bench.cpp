// `eplb-rebalance bench`: GPU exchange benchmark (weights resident, no disk), or with --io
// the storage roofline of a disk-to-disk job (eplb/bench/storage_roofline.hpp).
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>

#include "commands.hpp"
#include "eplb/bench/exchange_bench.hpp"
#include "eplb/bench/storage_roofline.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/units.hpp"
#include "validators.hpp"

namespace eplb::app {
namespace {

namespace fs = std::filesystem;

// A model name from configs/models/ (looked up from the working directory, then next to
// the source tree the binary was built from), or a path to such a JSON file.
fs::path find_model(const std::string& name) {
  if (fs::exists(name)) return name;
  const fs::path file = "configs/models/" + name + ".json";
  for (const fs::path& base : {fs::current_path(), fs::path(EPLB_SOURCE_DIR)}) {
    if (fs::exists(base / file)) return base / file;
  }
  throw core::Error(core::ErrorKind::kUsage,
                    "unknown model '" + name + "': not a file and not in configs/models/");
}

void load_model(const std::string& name, bench::BenchOptions& o) {
  const fs::path path = find_model(name);
  try {
    std::ifstream in(path);
    auto j = nlohmann::json::parse(in);
    o.model_name = j.at("name").get<std::string>();
    o.num_logical_experts = j.at("num_logical_experts").get<int32_t>();
    o.num_redundant_experts = j.value("num_redundant_experts", 0);
    o.tensors = io::parse_tensor_specs(j.at("tensors").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw core::Error(core::ErrorKind::kUsage, "'" + path.string() + "': " + e.what());
  }
}

void print_result(const bench::BenchOptions& o, const bench::BenchResult& r) {
  namespace log = core::log;
  log::info(
      "bench: {} on {} GPUs, {} slots per GPU, expert {}, {} layers resident, "
      "{} experts moved per run, median of {} runs",
      o.model_name, r.ep_size, r.num_slots_per_rank,
      core::format_bytes(static_cast<double>(r.expert_bytes)), o.num_layers, r.experts_moved,
      o.iterations);
  log::info("{:<27} {:>10} {:>12} {:>12} {:>11} {:>14} {:>9}", "method", "time ms", "busiest",
            "bandwidth", "NCCL sends", "extra device", "verified");
  for (const auto& m : r.methods) {
    const double rate = m.seconds > 0 ? static_cast<double>(m.busiest_bytes) / m.seconds : 0;
    log::info("{:<27} {:>10.2f} {:>12} {:>12} {:>11} {:>14} {:>9}", m.name, m.seconds * 1e3,
              core::format_bytes(static_cast<double>(m.busiest_bytes)), core::format_rate(rate),
              m.messages, core::format_bytes(static_cast<double>(m.extra_device_bytes)),
              m.verified
                  ? "yes"
                  : (m.name.starts_with("ours,") || m.name.starts_with("raw") ? "n/a" : "NO"));
  }
  const auto& ours = r.methods[0];
  const auto& raw = r.methods[1];
  const auto& vllm = r.methods[2];
  log::info(
      "ratios: ours/raw bandwidth (a/b) = {:.3f}; ours vs vLLM pattern, same rebalance "
      "(a/c, time) = {:.2f}x; bandwidth ratio = {:.2f}",
      ours.gbps() / raw.gbps(), vllm.seconds / ours.seconds, ours.gbps() / vllm.gbps());
  const auto& network = r.methods[3];
  log::info("ours without the local row copies: {:.2f} ms, a/b = {:.3f} (the exchange alone)",
            network.seconds * 1e3, network.gbps() / raw.gbps());
  const auto& registered = r.methods[4];
  if (registered.seconds > 0) {
    log::info(
        "against raw NCCL from registered buffers (as our staging is): a/b' = {:.3f}, "
        "without the local row copies {:.3f}",
        ours.gbps() / registered.gbps(), network.gbps() / registered.gbps());
  } else {
    log::info("raw NCCL from registered buffers: not measured (ncclMemAlloc failed on a rank)");
  }
  log::info(
      "device memory: weights {} per GPU (old + new), peak used {} (max over GPUs, "
      "cudaMemGetInfo)",
      core::format_bytes(static_cast<double>(r.weights_device_bytes)),
      core::format_bytes(static_cast<double>(r.peak_device_used_bytes)));
}

}  // namespace

Subcommand add_bench_command(CLI::App& root, CommonArgs& common) {
  struct Args {
    bench::BenchOptions options;
    std::string model = "deepseek-v3";
    std::string tensors;
    bool io = false;
    std::filesystem::path io_input, io_output_dir;
    size_t io_write_bytes = 0;
    bool io_no_single = false;
  };
  auto args = std::make_shared<Args>();
  auto& opts = args->options;
  auto* app = root.add_subcommand(
      "bench", "GPU exchange benchmark: ours vs raw NCCL send/recv vs the vLLM pattern");
  app->add_option("--model", args->model,
                  "Model shape: a name from configs/models/ (deepseek-v3, qwen3-30b-a3b) or a "
                  "JSON file")
      ->capture_default_str();
  app->add_option("--tensors", args->tensors, "Override the model's tensors (name:dtype:AxB,...)");
  app->add_option("--experts", opts.num_logical_experts, "Override the logical expert count");
  app->add_option("--redundant", opts.num_redundant_experts, "Override the redundant slot count");
  app->add_option("--layers", opts.num_layers, "Layers resident per GPU")->capture_default_str();
  app->add_option("--iterations", opts.iterations, "Timed runs per method")->capture_default_str();
  app->add_option("--warmup", opts.warmup, "Untimed runs per method")->capture_default_str();
  app->add_option("--seed", opts.seed, "Seed of the random placements")->capture_default_str();
  app->add_option("--max-staging-bytes", opts.max_staging_bytes,
                  "Our transport's device staging budget (e.g. 2GiB)")
      ->transform(size_between(uint64_t{1} << 20, uint64_t{1} << 40))
      ->default_str("2GiB");
  add_timeout_option(app, common);
  app->add_flag("--trace", opts.trace,
                "Rank 0 prints when each round of our exchange gathered, sent and scattered");
  auto* io = app->add_flag("--io", args->io,
                           "Storage roofline instead: each process reads its share of --input "
                           "while it writes as many bytes to --output-dir, all at once, then "
                           "one stream reads and writes it all (O_DIRECT, 1 MiB blocks)");
  app->add_option("--input", args->io_input, "--io: a file or directory to read")->needs(io);
  app->add_option("--output-dir", args->io_output_dir,
                  "--io: an existing directory for the scratch files (removed afterwards)")
      ->needs(io)
      ->check(output_dir());
  app->add_option("--write-bytes", args->io_write_bytes,
                  "--io: bytes to write, over all processes (default: as many as --input has)")
      ->needs(io)
      ->transform(size_between(uint64_t{1}, uint64_t{1} << 50));
  app->add_flag("--no-single-stream", args->io_no_single, "--io: skip the single-stream figure")
      ->needs(io);
  add_report_option(app);
  return {
      app, [args](const runtime::MpiSession& session) {
        if (args->io) {
          if (args->io_input.empty() || args->io_output_dir.empty()) {
            throw core::Error(core::ErrorKind::kUsage, "bench --io needs --input and --output-dir");
          }
          bench::RooflineOptions ro;
          ro.read_files = bench::files_under(args->io_input);
          ro.write_dir = args->io_output_dir;
          ro.write_bytes = args->io_write_bytes;
          ro.single_stream = !args->io_no_single;
          job_report()["inputs"] = {{"input", args->io_input.string()},
                                    {"output_dir", args->io_output_dir.string()}};
          const auto r = bench::measure_storage_roofline(session.group(), ro);
          bench::log_roofline(r, "", 0);
          job_report()["roofline"] = bench::roofline_json(r, 0);
          return 0;
        }
        auto o = args->options;
        bench::BenchOptions model;
        load_model(args->model, model);
        o.model_name = model.model_name;
        o.tensors = args->tensors.empty() ? model.tensors : io::parse_tensor_specs(args->tensors);
        if (o.num_logical_experts == 0) o.num_logical_experts = model.num_logical_experts;
        if (o.num_redundant_experts == 0) o.num_redundant_experts = model.num_redundant_experts;
        print_result(o, bench::run_exchange_bench(session, o));
        return 0;
      }};
}

}  // namespace eplb::app
