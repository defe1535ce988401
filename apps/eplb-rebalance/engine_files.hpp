// What the commands read from the engines' and the model's files: the model's layer
// numbering (--model-layers, --hf, --checkpoint) and TensorRT-LLM's expert statistic
// directory. Local: every rank reads the same files and gets the same result.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "eplb/balance/load.hpp"
#include "eplb/placement/model_layers.hpp"

namespace eplb::app {

// The options that give the model's layers; at most one of them.
struct ModelArgs {
  std::string model_layers;          // --model-layers SPEC
  std::filesystem::path hf_dir;      // --hf DIR (config.json)
  std::filesystem::path checkpoint;  // --checkpoint DIR (manifest's hugging_face section)
};

// Adds --model-layers, --hf and --checkpoint to `app`. `hf_help` describes --hf for commands
// where it means more (import's input); empty adds the plain description.
void add_model_options(CLI::App* app, ModelArgs& args);

// The model's layers from whichever option was given; nullopt when none was. Throws
// core::Error: kUsage for a bad --model-layers or several options at once; kInput when the
// config.json or manifest does not say (a model family lib/hf does not know, a checkpoint
// not made by import), naming the file and the other options.
std::optional<placement::ModelLayers> model_layers_from(const ModelArgs& args);

// TensorRT-LLM's expert statistic directory: meta_info.json and every rank<r>.safetensors
// (any other file is left alone), read through lib/hf's safetensors reader. Throws
// core::Error (kInput for a file that is not valid safetensors, kIo when unreadable).
balance::TrtllmStatistic read_trtllm_statistic(const std::filesystem::path& dir);

}  // namespace eplb::app
