// libFuzzer target for the safetensors header parser. The input is a whole file: 8-byte
// length, header, data. Built only with clang and -DEPLB_FUZZ=ON (test/fuzz/README.md).
//
// Beyond "no crash, no sanitizer report", every accepted header must satisfy what the
// readers rely on: tensors sorted by offset, covering the data section exactly, sizes equal
// to dtype x shape; and a fresh header made from them must parse back to the same tensors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "eplb/core/error.hpp"
#include "eplb/hf/safetensors.hpp"

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

void check_accepted(const eplb::hf::Header& header, uint64_t data_bytes) {
  const uint64_t base = 8 + header.header_bytes;
  uint64_t covered = base;
  for (const eplb::hf::TensorEntry& t : header.tensors) {
    require(t.data_begin == covered);
    uint64_t bytes = eplb::io::dtype_size(t.dtype);
    for (int64_t dim : t.shape) {
      require(dim >= 0);
      bytes *= static_cast<uint64_t>(dim);
    }
    require(bytes == t.num_bytes);
    covered += t.num_bytes;
  }
  require(covered == base + data_bytes);

  std::vector<eplb::hf::TensorEntry> tensors = header.tensors;
  const std::string raw = eplb::hf::make_raw_prefix(tensors, header.metadata);
  const eplb::hf::Header again =
      eplb::hf::parse_header(std::string_view(raw).substr(8), data_bytes, "again");
  require(again.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    require(again.tensors[i] == tensors[i]);
    require(again.tensors[i].shape == header.tensors[i].shape);
  }
  require(again.metadata == header.metadata);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8) return 0;
  const std::string_view json(reinterpret_cast<const char*>(data) + 8, header_len);
  const uint64_t data_bytes = size - 8 - header_len;
  try {
    check_accepted(eplb::hf::parse_header(json, data_bytes, "fuzz"), data_bytes);
  } catch (const eplb::core::Error& error) {
    // Refused: fine, as long as it is an input error and nothing else.
    require(error.kind() == eplb::core::ErrorKind::kInput);
  }
  return 0;
}
