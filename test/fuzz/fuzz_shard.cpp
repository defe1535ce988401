// libFuzzer target for the shard metadata reader (lib/io shard.cpp): the input is a whole
// HDF5 file. ShardReader opens files by path, so each input is written to a file in a
// private temporary directory (under /dev/shm when there is one) and opened from there.
// Built only with clang and -DEPLB_FUZZ=ON (test/fuzz/README.md). HDF5 itself is not
// instrumented: coverage guides the fuzzer through our code only, and a crash inside
// libhdf5 shows as a crash with HDF5 frames.
//
// Leaks: HDF5 1.10.8 loses some memory inside H5Fopen when it refuses a corrupt file (an
// object header chunk from H5G_mkroot; nothing reaches us to free). Those allocations,
// with H5F_open on their stack, are suppressed below, and only those; full stacks are
// needed to tell them apart (libhdf5 has no frame pointers). Our own handles are checked
// directly: no HDF5 object may stay open after an input.
//
// libhdf5's own memory errors that ASan sees (in the libc calls it intercepts) are
// suppressed too, by hdf5.supp; a crash inside libhdf5 still ends the run, and is triaged
// by its stack (docs/RELIABILITY.md "Fuzzing").
//
// The file is readable and regular, so whatever it holds, a refusal must be
// core::Error(kInput), corrupt content (docs/CLI.md: exit 2); kIo, any other exception, a
// crash, a sanitizer report or a hang is a finding. An accepted shard must hold what its
// attributes say, and every layer must read back (ids, checksums and rows).
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/io/shard.hpp"

namespace {

namespace fs = std::filesystem;

void require(bool condition) {
  if (!condition) std::abort();
}

// Reads of more than this many bytes are skipped (the caller allocates them; a tiny file
// may declare a large dataset whose unwritten chunks read as zeros).
constexpr uint64_t kMaxReadBytes = uint64_t{16} << 20;

struct TempDir {
  fs::path dir;
  TempDir() {
    const fs::path base =
        fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string pattern = (base / "eplb-fuzz-shard-XXXXXX").string();
    require(::mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

void write_file(const fs::path& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  require(fd >= 0);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    require(n > 0);
    done += static_cast<size_t>(n);
  }
  require(::close(fd) == 0);
}

void read_everything(const eplb::io::ShardReader& reader) {
  const eplb::io::ShardInfo& info = reader.info();
  require(info.ep_size >= 1 && info.ep_rank >= 0 && info.ep_rank < info.ep_size);
  require(info.num_layers >= 0 && info.num_slots_per_rank >= 1);
  const auto slots = static_cast<uint64_t>(info.num_slots_per_rank);
  if (slots * sizeof(uint64_t) > kMaxReadBytes) return;
  for (int32_t layer = 0; layer < info.num_layers; ++layer) {
    require(reader.read_logical_ids(layer).size() == slots);
    for (size_t t = 0; t < info.tensors.size(); ++t) {
      require(reader.read_checksums(layer, t).size() == slots);
      const uint64_t row_bytes = info.tensors[t].row_bytes();
      if (row_bytes > kMaxReadBytes / slots) continue;
      std::vector<std::byte> rows(static_cast<size_t>(row_bytes * slots));
      reader.read_tensor(layer, t, rows);
    }
  }
}

}  // namespace

extern "C" const char* __asan_default_options() {
  return "fast_unwind_on_malloc=0:suppressions=" EPLB_FUZZ_SOURCE_DIR "/hdf5.supp";
}
extern "C" const char* __lsan_default_suppressions() { return "leak:H5F_open\n"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempDir temp;
  const fs::path path = temp.dir / "rank-00000.h5";
  write_file(path, data, size);
  try {
    const eplb::io::ShardReader reader(path);
    read_everything(reader);
  } catch (const eplb::core::Error& error) {
    // Refused: fine, as long as it is corrupt content and nothing else.
    if (error.kind() != eplb::core::ErrorKind::kInput) {
      std::fprintf(stderr, "finding: %s error: %s\n", eplb::core::to_string(error.kind()),
                   error.what());
      std::abort();
    }
  }
  // Every file, group, dataset, datatype and attribute we opened is closed again.
  require(H5Fget_obj_count(static_cast<hid_t>(H5F_OBJ_ALL), H5F_OBJ_ALL) == 0);
  return 0;
}
