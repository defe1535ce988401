// The storage roofline of a disk-to-disk job (`bench --io`, `run|import|export --roofline`;
// docs/CLI.md, docs/PERFORMANCE.md): what the filesystems do when the job's bytes are read
// from the input's filesystem and written to the output's, measured by the tool itself (no
// fio needed).
//
// Two figures:
//   - concurrent: every process reads its share of the input (one stream) while it writes
//     its share of the output count to a scratch file (another stream), all processes at
//     once: P reading and P writing streams, the I/O an overlapped pipeline asks for;
//   - single stream: rank 0 alone reads all of it, then writes all of it (the `dd` figure).
// Direct I/O (O_DIRECT) with 1 MiB aligned blocks; where a filesystem refuses O_DIRECT
// (tmpfs, some FUSE filesystems), buffered I/O with the input evicted from the page cache
// first (posix_fadvise DONTNEED) and the writes fdatasync'ed and evicted, and the result
// says so. Writes always end with fdatasync, inside the timed interval.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/runtime/mpi.hpp"

namespace eplb::bench {

inline constexpr uint64_t kRooflineBlock = uint64_t{1} << 20;

struct RooflineOptions {
  // What is read, in this order; read_bytes (0: all of them) caps the total.
  std::vector<std::filesystem::path> read_files;
  uint64_t read_bytes = 0;
  // Scratch files (one per process, removed afterwards) are written here: a directory on
  // the output's filesystem.
  std::filesystem::path write_dir;
  uint64_t write_bytes = 0;  // total over the processes; 0: as many as are read
  bool single_stream = true;
};

struct RooflineResult {
  int32_t streams = 0;  // P: processes; each reads with one stream and writes with another
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  double concurrent_seconds = 0;  // all 2P streams at once, until the slowest finished
  double single_read_seconds = 0;
  double single_write_seconds = 0;
  bool read_direct = true;  // false: some process fell back to buffered reads
  bool write_direct = true;
  std::vector<std::string> notes;  // why a fallback happened; memory filesystems

  double single_seconds() const { return single_read_seconds + single_write_seconds; }
};

// Every regular file under `path` (itself if it is a file), sorted by path; symbolic links
// are not followed. Throws core::Error(kIo) if the directory cannot be listed.
std::vector<std::filesystem::path> files_under(const std::filesystem::path& path);
uint64_t total_size(const std::vector<std::filesystem::path>& files);

// Collective over group.comm: every process must pass the same options. Throws
// core::Error(kIo) on every rank if any rank fails (naming the file and the rank).
RooflineResult measure_storage_roofline(const runtime::Group& group,
                                        const RooflineOptions& options);

// For logs and reports. `job_seconds` <= 0: the result alone (bench --io).
// Rank 0 logs: the figures, how the I/O was done, and job_seconds over each figure.
void log_roofline(const RooflineResult& r, std::string_view job, double job_seconds);
// The "roofline" object of a --json report (docs/CLI.md, "Reports").
nlohmann::json roofline_json(const RooflineResult& r, double job_seconds);

}  // namespace eplb::bench
