// Hugging Face checkpoints in and out (docs/CLI.md `import` and `export`, docs/FORMAT.md
// "Hugging Face name mapping").
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "eplb/runtime/mpi.hpp"

namespace eplb::tools {

struct ImportOptions {
  std::filesystem::path hf_dir;
  std::filesystem::path placement;
  std::optional<int32_t> ep_size;
  std::filesystem::path output;
  std::string experts_pattern;  // --experts; empty: the family from config.json
  bool force = false;
};

struct ExportOptions {
  std::filesystem::path checkpoint;
  std::filesystem::path hf_base;
  std::filesystem::path output;
};

struct HfReport {
  int32_t num_files = 0;  // shards (import) or safetensors files (export) written
  int32_t num_moe_layers = 0;
  int32_t num_logical_experts = 0;
  long long bytes_written = 0;  // payload, all processes
  long long bytes_read = 0;     // tensor bytes read from the input files, all processes
  double seconds = 0;
  // import: where the time went (max over processes): load and check the inputs, create
  // the output; read the HF files and write the shards (overlapped; fdatasync included);
  // describe the shards, write the manifest and rename. Empty for export.
  struct Phases {
    double setup = 0;
    double write = 0;
    double commit = 0;
  };
  std::optional<Phases> phases;
};

// Collective. Every process maps the model (config.json + the index's tensor names) and
// checks the placement against it; process p then writes the shards of EP ranks p,
// p + size, ..., reading only the bytes of the experts they hold (pread), through the same
// staging-and-commit protocol as `run`. The manifest records the Hugging Face section.
// Throws core::Error on every rank (kInput: model or placement problems; kUsage: output
// exists, bad --experts; kIo).
HfReport import_hf(const runtime::MpiSession& session, const ImportOptions& options);

// Collective. Rebuilds every safetensors file of the HF base with the same header, the
// non-expert tensors copied from the base and each logical expert's bytes taken once from
// the shards (replicas that disagree are refused); process p writes files p, p + size, ...
// into a staging directory; rank 0 copies config.json and the other small files and
// renames staging into place. Throws core::Error on every rank.
HfReport export_hf(const runtime::MpiSession& session, const ExportOptions& options);

}  // namespace eplb::tools
