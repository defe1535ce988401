// libFuzzer target for the shard metadata reader (lib/io shard.cpp): the input is a whole
// HDF5 file. ShardReader opens files by path, so each input is written to a file in a
// private temporary directory (under /dev/shm when there is one) and opened from there.
// Built only with clang and -DEPLB_FUZZ=ON (test/fuzz/README.md). HDF5 itself is not
// instrumented: coverage guides the fuzzer through our code only, and a crash inside
// libhdf5 shows as a crash with HDF5 frames.
//
// Leaks: HDF5 1.10.8 loses memory on some corrupt files, with every handle of ours
// closed. Two cases are known, each suppressed below by the HDF5 function on the leaked
// block's allocation stack, and only those:
//   - H5F_open: H5Fopen refusing a corrupt file loses an object header chunk (from
//     H5G_mkroot); nothing reaches us to free.
//   - H5O_protect: loading a damaged object header into the metadata cache (here through
//     H5Oget_info_by_name2, in h5::object_type) loses the H5O_t it allocated (424 bytes)
//     when the load fails. test/fuzz/hdf5/h5leak.c shows it with HDF5's API alone (open,
//     H5Oget_info_by_name2 on each link, close everything, file closed: LeakSanitizer
//     reports the H5O_t), on corpus/shard/hdf5-leak-object-header.h5.
// Memory allocated under those two functions belongs to HDF5 (the file being opened, the
// metadata cache); none of it is handed to the caller. What HDF5 hands to us (variable-
// length strings from H5Aread, ...) is allocated elsewhere, and a handle of ours left open
// is caught directly: no HDF5 object may stay open after an input (a leaked handle keeps
// its memory reachable, so LeakSanitizer would not see it). Full stacks are needed to
// match the suppressions (libhdf5 has no frame pointers): fast_unwind_on_malloc=0, and
// malloc_context_size deep enough to reach them from malloc.
//
// HDF5's free lists (H5FL) are turned off (limits of 0 bytes: a freed block goes back to
// malloc at once). With them on, a block malloc'ed by one input's code path is handed out
// again by another's: a leak then shows the first path's stack (escaping its suppression),
// and is reported with whichever later input makes libFuzzer look, so that a replay does
// not show it (seen: "leak" findings that did not recur on replay). Off, every leak is
// reported with the input that made it, and its stack is where it was allocated. The cost:
// every HDF5 allocation is a malloc with a slow unwind, several times fewer inputs a
// second.
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
  return "fast_unwind_on_malloc=0:malloc_context_size=100:suppressions=" EPLB_FUZZ_SOURCE_DIR
         "/hdf5.supp";
}
extern "C" const char* __lsan_default_suppressions() { return "leak:H5F_open\nleak:H5O_protect\n"; }

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // As io::h5::ensure_ready does before the library's first call (it would be too late).
  require(H5dont_atexit() >= 0);
  require(H5set_free_list_limits(0, 0, 0, 0, 0, 0) >= 0);
  return 0;
}

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
