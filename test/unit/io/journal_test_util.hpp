// Shared by the journal tests: a checkpoint of two 16-byte "shards" (the journal treats
// them as bytes) with an old manifest, and the manifest a journal installs.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

#include "eplb/io/manifest.hpp"
#include "eplb/io/tensor.hpp"
#include "io_test_util.hpp"

namespace eplb::io::test {

inline std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// A manifest for the two shards, with `checkpoint_id`.
inline std::string two_shard_manifest(const std::string& checkpoint_id) {
  Manifest m;
  m.tensors = parse_tensor_specs("w:fp32:2");
  m.placement.ep_size = 2;
  m.placement.num_slots_per_rank = 2;
  m.placement.num_logical_experts = 4;
  m.placement.physical_to_logical_map = {{3, 2, 1, 0}};
  m.files = {FileEntry{"rank-00000.h5", 16, 1, true}, FileEntry{"rank-00001.h5", 16, 0, false}};
  m.checkpoint_id = checkpoint_id;
  return to_json(m);
}

// Rank 0's shard holds 16 'A's, rank 1's `rank1`; the manifest says "old manifest".
struct TwoShards {
  TempDir tmp;
  std::filesystem::path dir = tmp / "ckpt";
  explicit TwoShards(const std::string& rank1) {
    std::filesystem::create_directories(dir);
    write_file(dir / "rank-00000.h5", "AAAAAAAAAAAAAAAA");
    write_file(dir / "rank-00001.h5", rank1);
    write_file(dir / "manifest.json", "old manifest");
  }
  std::string shard(int rank) const {
    return read_file(dir / (rank == 0 ? "rank-00000.h5" : "rank-00001.h5"));
  }
};

}  // namespace eplb::io::test
