// Synthetic checkpoints: every expert's bytes are a function of (seed, layer, logical
// expert, tensor) alone (io::fill_synthetic), so any rebalanced output can be checked
// against a checkpoint generated directly for the new placement.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "eplb/io/tensor.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::tools {

struct GenerateOptions {
  std::filesystem::path placement;
  std::optional<int32_t> ep_size;
  std::filesystem::path output;
  std::vector<io::TensorSpec> tensors;
  uint64_t seed = 0;
  bool force = false;
};

struct GenerateReport {
  int32_t num_files = 0;
  long long bytes_written = 0;  // shard payload, all processes
  double seconds = 0;
};

// Collective: process p writes the shards of EP ranks p, p + size, ... (any process count
// works), through the same staging-and-commit protocol as a rebalance.
GenerateReport generate(const runtime::MpiSession& session, const GenerateOptions& options);

}  // namespace eplb::tools
