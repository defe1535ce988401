// Internal to lib/hf: what model.cpp and model_families.cpp share.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace eplb::hf::detail {

// config.json's "model_type": "" when absent; anything but a string is an input error
// naming `source`.
std::string model_type_of(const nlohmann::json& config, const std::string& source);

}  // namespace eplb::hf::detail
