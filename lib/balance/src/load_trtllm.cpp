// TensorRT-LLM's expert statistic, as tensorrt_llm/_torch/expert_statistic.py writes it and
// examples/ep_load_balancer/utils.py (load_expert_statistic) reads it: meta_info.json
// {"num_experts", "num_experts_per_token"} from rank 0, and per EP rank
// rank<r>.safetensors with one tensor "<iter>_<layer>" per (iteration, model layer): the
// tokens that rank routed to each expert (torch.bincount, int64). The reader sums the
// ranks; every iteration must hold every layer, and the iterations must be contiguous.
#include <fmt/format.h>

#include <charconv>
#include <map>
#include <set>

#include "eplb/core/error.hpp"
#include "load_detail.hpp"

namespace eplb::balance {
namespace {

using core::json::as_int;
using core::json::describe;
using core::json::Reporter;
using nlohmann::json;

std::optional<int64_t> number(std::string_view text) {
  int64_t value = 0;
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

// meta_info.json's expert count (num_experts_per_token is checked, not used).
int64_t read_meta(const TrtllmStatistic& s, core::ProblemList& problems) {
  Reporter report(s.dir + "/meta_info.json");
  json meta;
  try {
    meta = core::json::parse_document(s.meta_info, report);
  } catch (const core::Error& error) {
    for (const auto& p : error.problems()) problems.add(p);
    return 0;
  }
  int64_t num_experts = 0;
  if (!meta.is_object()) {
    report.add("", fmt::format("expected an object {{\"num_experts\", \"num_experts_per_token\"}}, "
                               "got {}",
                               describe(meta)));
  } else {
    for (const auto& [key, value] : meta.items()) {
      if (key != "num_experts" && key != "num_experts_per_token") {
        report.add(core::json::pointer_to_key(key), fmt::format("unknown key \"{}\"", key));
      }
    }
    for (const char* key : {"num_experts", "num_experts_per_token"}) {
      const auto value = meta.contains(key) ? as_int(meta.at(key)) : std::nullopt;
      if (!value || *value < 1 || *value > (int64_t{1} << 24)) {
        report.add(meta.contains(key) ? std::string("/") + key : "",
                   meta.contains(key)
                       ? fmt::format("expected a positive integer, got {}", describe(meta.at(key)))
                       : fmt::format("missing required key \"{}\"", key));
      } else if (key == std::string("num_experts")) {
        num_experts = *value;
      }
    }
  }
  problems.append(report.problems());
  return num_experts;
}

const std::set<std::string> kIntegerTypes = {"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"};

// "<iter>_<layer>" as TensorRT-LLM names its tensors, or nullopt.
std::optional<std::pair<int64_t, int64_t>> iteration_and_layer(std::string_view name) {
  const size_t sep = name.find('_');
  if (sep == std::string_view::npos) return std::nullopt;
  const auto iter = number(name.substr(0, sep));
  const auto layer = number(name.substr(sep + 1));
  if (!iter || !layer || *layer > std::numeric_limits<int32_t>::max()) return std::nullopt;
  return std::pair{*iter, *layer};
}

using Counts = std::map<std::pair<int64_t, int64_t>, std::vector<double>>;  // (iter, layer)

void add_rank(const TrtllmRankFile& file, size_t num_experts, const std::string& dir,
              Counts& counts, core::ProblemList& problems) {
  const std::string where = fmt::format("'{}/{}'", dir, file.name);
  for (const TrtllmTensor& t : file.tensors) {
    const auto key = iteration_and_layer(t.name);
    const std::string at = fmt::format("{} tensor '{}'", where, t.name);
    if (!key) {
      problems.add(fmt::format("{}: the name is not \"<iteration>_<layer>\"", at));
    } else if (!kIntegerTypes.contains(t.dtype)) {
      problems.add(fmt::format("{}: dtype {} is not an integer type (token counts)", at, t.dtype));
    } else if (t.shape != std::vector<int64_t>{static_cast<int64_t>(num_experts)} ||
               t.values.size() != num_experts) {
      std::string shape;
      for (int64_t d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
      problems.add(fmt::format("{}: expected shape [{}] (meta_info.json's num_experts), got [{}]",
                               at, num_experts, shape));
    } else {
      auto& sum = counts[*key];
      sum.resize(num_experts, 0.0);
      for (size_t e = 0; e < num_experts; ++e) {
        if (t.values[e] < 0) {
          problems.add(fmt::format("{}: expert {} has a negative count {}", at, e, t.values[e]));
          break;
        }
        sum[e] += t.values[e];
      }
    }
  }
}

// The files must be rank0 .. rank<N-1>, each once.
void check_rank_names(const TrtllmStatistic& s, core::ProblemList& problems) {
  std::set<int64_t> ranks;
  for (const auto& file : s.ranks) {
    const std::string_view name = file.name;
    const bool shaped = name.starts_with("rank") && name.ends_with(".safetensors");
    const auto rank = shaped ? number(name.substr(4, name.size() - 4 - 12)) : std::nullopt;
    if (!rank) {
      problems.add(fmt::format("'{}/{}': not a rank<r>.safetensors file", s.dir, file.name));
    } else {
      ranks.insert(*rank);
    }
  }
  if (s.ranks.empty()) {
    problems.add(
        fmt::format("'{}': no rank<r>.safetensors file (TensorRT-LLM's expert statistic "
                    "has one per EP rank)",
                    s.dir));
  } else if (!ranks.empty() && (*ranks.rbegin() + 1 != static_cast<int64_t>(ranks.size()))) {
    problems.add(fmt::format("'{}': rank files are not rank0 to rank{} ({} files)", s.dir,
                             ranks.size() - 1, ranks.size()));
  }
}

}  // namespace

ParsedLoads parse_trtllm_statistic(const TrtllmStatistic& s, const LoadOptions& options) {
  core::ProblemList problems(core::ErrorKind::kInput);
  const auto num_experts = static_cast<size_t>(read_meta(s, problems));
  check_rank_names(s, problems);
  problems.throw_if_any();
  Counts counts;
  for (const auto& file : s.ranks) add_rank(file, num_experts, s.dir, counts, problems);
  problems.throw_if_any();
  std::set<int64_t> iters, layers;
  for (const auto& [key, sum] : counts) {
    iters.insert(key.first);
    layers.insert(key.second);
  }
  if (counts.empty()) problems.add(fmt::format("'{}': the rank files hold no counts", s.dir));
  if (!iters.empty() &&
      *iters.rbegin() - *iters.begin() + 1 != static_cast<int64_t>(iters.size())) {
    problems.add(fmt::format("'{}': iterations {} to {} are not contiguous ({} of them)", s.dir,
                             *iters.begin(), *iters.rbegin(), iters.size()));
  }
  for (int64_t iter : iters) {
    for (int64_t layer : layers) {
      if (counts.count({iter, layer}) == 0 && problems.size() < 20) {
        problems.add(
            fmt::format("'{}': no rank holds iteration {} of layer {}", s.dir, iter, layer));
      }
    }
  }
  problems.throw_if_any();
  ParsedLoads out;
  out.loads.num_logical_experts = static_cast<int32_t>(num_experts);
  std::vector<int32_t> model_layers;
  for (int64_t layer : layers) {
    std::vector<double> total(num_experts, 0.0);
    for (int64_t iter : iters) {
      const auto& sum = counts.at({iter, layer});
      for (size_t e = 0; e < num_experts; ++e) total[e] += sum[e];
    }
    out.loads.per_layer.push_back(std::move(total));
    model_layers.push_back(static_cast<int32_t>(layer));
  }
  out.form = fmt::format("TensorRT-LLM expert statistic, {} ranks, iterations {} to {}",
                         s.ranks.size(), *iters.begin(), *iters.rbegin());
  Reporter report(s.dir);
  if (options.old_placement &&
      options.old_placement->num_logical_experts != out.loads.num_logical_experts) {
    report.add("", fmt::format("{} experts per layer, but the old placement has {} logical experts",
                               num_experts, options.old_placement->num_logical_experts));
  }
  detail::apply_load_layers(detail::Rows::kModelKeyed, model_layers, options, "", out, report);
  report.throw_if_any();
  return out;
}

}  // namespace eplb::balance
