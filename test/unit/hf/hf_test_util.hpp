// Helpers shared by the lib/hf unit tests: temporary directories and safetensors files
// built byte by byte, so every test states exactly what is on disk.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>

#include "eplb/core/error.hpp"
#include "test_files.hpp"

namespace eplb::hf::test {

using eplb::test::error_text;
using eplb::test::read_file;
using eplb::test::TempDir;
using eplb::test::write_file;

// 8-byte little-endian length.
inline std::string le64(uint64_t value) {
  std::string out(8, '\0');
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file: length of `json`, `json`, then `data`.
inline std::string safetensors_bytes(const std::string& json, const std::string& data) {
  return le64(json.size()) + json + data;
}

}  // namespace eplb::hf::test
