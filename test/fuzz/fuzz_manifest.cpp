// libFuzzer target for the checkpoint manifest reader (lib/io manifest.cpp). Built only with
// clang and -DEPLB_FUZZ=ON (test/fuzz/README.md).
//
// Bad input must end in core::Error(kInput); any other exception, a crash, a sanitizer
// report or a hang is a finding. Every accepted manifest must be consistent (one file per EP
// rank, one Hugging Face entry per tensor) and come back unchanged from to_json.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "eplb/core/error.hpp"
#include "eplb/io/manifest.hpp"

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::optional<eplb::io::Manifest> manifest;
  try {
    manifest = eplb::io::parse_manifest(text, "fuzz");
  } catch (const eplb::core::Error& error) {
    // Refused: fine, as long as it is an input error and nothing else.
    require(error.kind() == eplb::core::ErrorKind::kInput);
    return 0;
  }
  require(!manifest->tensors.empty());
  require(manifest->files.size() == static_cast<size_t>(manifest->placement.ep_size));
  if (manifest->hugging_face) {
    require(manifest->hugging_face->tensors.size() == manifest->tensors.size());
  }
  require(eplb::io::parse_manifest(eplb::io::to_json(*manifest), "again") == *manifest);
  return 0;
}
