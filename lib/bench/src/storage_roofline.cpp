// The storage roofline (eplb/bench/storage_roofline.hpp).
#include "eplb/bench/storage_roofline.hpp"
#include "eplb/core/units.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "eplb/core/clock.hpp"
#include "eplb/core/error.hpp"
#include "eplb/core/fd.hpp"
#include "eplb/core/log.hpp"
#include "eplb/core/mix.hpp"
#include "eplb/fs/create.hpp"
#include "eplb/fs/direct_io.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/job/agreement.hpp"
#include "eplb/job/figures.hpp"

namespace eplb::bench {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorKind;

constexpr size_t kBlock = static_cast<size_t>(kRooflineBlock);
constexpr size_t kAlign = eplb::fs::kDirectAlign;  // O_DIRECT: offsets, lengths, buffers

using core::Fd;
using core::quoted;
using eplb::fs::AlignedBytes;

// Memory filesystems: eviction does nothing there, the figure is memory speed.
std::optional<std::string> memory_filesystem(const fs::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return std::nullopt;
  if (st.f_type == TMPFS_MAGIC) return "tmpfs";
  if (st.f_type == RAMFS_MAGIC) return "ramfs";
  return std::nullopt;
}

// Tests force the buffered fallback with EPLB_TEST_NO_O_DIRECT=1 (this machine's
// filesystems all take O_DIRECT).
bool direct_refused_for_tests() { return !eplb::fs::direct_io_wanted(); }

// One stream's outcome, local to a process.
struct StreamStats {
  bool direct = true;
  std::string note;  // why not direct
};

// A 1 MiB piece of one input file: [offset, offset + length), offset 1 MiB aligned.
struct Block {
  size_t file = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

std::vector<Block> blocks_of(const std::vector<fs::path>& files, uint64_t cap) {
  std::vector<Block> blocks;
  uint64_t total = 0;
  for (size_t f = 0; f < files.size() && (cap == 0 || total < cap); ++f) {
    std::error_code ec;
    const uint64_t size = fs::file_size(files[f], ec);
    if (ec) throw Error(ErrorKind::kIo, "storage roofline: cannot stat " + quoted(files[f]));
    for (uint64_t at = 0; at < size && (cap == 0 || total < cap); at += kRooflineBlock) {
      uint64_t length = std::min(kRooflineBlock, size - at);
      if (cap != 0) length = std::min(length, cap - total);
      blocks.push_back({f, at, length});
      total += length;
    }
  }
  return blocks;
}

// Reads `blocks` (in order) with O_DIRECT, or buffered after evicting the range.
StreamStats read_blocks(const std::vector<fs::path>& files, std::span<const Block> blocks) {
  StreamStats stats;
  const bool refused = direct_refused_for_tests();
  AlignedBytes buf(kBlock);
  size_t open_file = files.size();
  Fd fd;
  const auto open_buffered = [&](const fs::path& path, int why) {
    fd = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      throw Error(ErrorKind::kIo,
                  "storage roofline: cannot open " + quoted(path) + ": " + std::strerror(errno));
    }
    if (stats.direct) {
      stats.direct = false;
      stats.note = fmt::format(
          "reads of {} are buffered (O_DIRECT refused: {}); the page cache was emptied of "
          "them first with posix_fadvise(DONTNEED)",
          quoted(path.parent_path()), std::strerror(why));
    }
    // Dirty pages are not evicted: write them back first.
    ::fdatasync(fd.get());
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  };
  for (const Block& b : blocks) {
    const fs::path& path = files[b.file];
    if (b.file != open_file) {
      if (fd.get() >= 0 && !stats.direct) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
      open_file = b.file;
      const bool try_direct = stats.direct && !refused;
      fd = Fd(try_direct ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT) : -1);
      if (fd.get() < 0) {
        const int err = try_direct ? errno : EINVAL;
        if (err != EINVAL) {
          throw Error(ErrorKind::kIo,
                      "storage roofline: cannot open " + quoted(path) + ": " + std::strerror(err));
        }
        open_buffered(path, err);
      }
    }
    // Whole aligned blocks: a direct read past the end of the file returns what is there.
    const size_t want = (static_cast<size_t>(b.length) + kAlign - 1) / kAlign * kAlign;
    for (;;) {
      const ssize_t n = ::pread(fd.get(), buf.data(), want, static_cast<off_t>(b.offset));
      if (n >= 0) {
        if (static_cast<uint64_t>(n) < b.length) {
          throw Error(ErrorKind::kIo, "storage roofline: " + quoted(path) + " shrank while read");
        }
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EINVAL && stats.direct) {
        open_buffered(path, EINVAL);
        continue;
      }
      throw Error(ErrorKind::kIo,
                  "storage roofline: cannot read " + quoted(path) + ": " + std::strerror(errno));
    }
  }
  // Leave the input as cold as it was found.
  if (fd.get() >= 0 && !stats.direct) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  return stats;
}

// Removes the scratch file however the measurement ends.
struct ScratchFile {
  fs::path path;
  ~ScratchFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// Writes `bytes` (rounded up to 4 KiB) to a new file in 1 MiB blocks, then fdatasync.
StreamStats write_file(const fs::path& path, uint64_t bytes) {
  StreamStats stats;
  AlignedBytes buf(kBlock);
  // Not zeros and not one repeated block: no filesystem may compress or deduplicate it.
  for (size_t i = 0; i < kBlock; i += sizeof(uint64_t)) {
    const uint64_t x = core::splitmix64(i);
    std::memcpy(buf.data() + i, &x, sizeof x);
  }
  eplb::fs::Created created;
  created.error = EINVAL;
  if (!direct_refused_for_tests()) {
    created = eplb::fs::try_create_new_file(AT_FDCWD, path, O_WRONLY | O_DIRECT, 0600);
  }
  Fd fd = std::move(created.fd);
  errno = created.error;
  const auto fall_back = [&](int why) {
    stats.direct = false;
    stats.note = fmt::format(
        "writes to {} are buffered (O_DIRECT refused: {}), fdatasync'ed inside the timing",
        quoted(path.parent_path()), std::strerror(why));
    fd = Fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  };
  if (fd.get() < 0 && errno == EINVAL) {
    created = eplb::fs::try_create_new_file(AT_FDCWD, path, O_WRONLY, 0600);
    fd = std::move(created.fd);
    errno = created.error;
    stats.direct = false;
    stats.note = fmt::format(
        "writes to {} are buffered (O_DIRECT refused: {}), fdatasync'ed inside the timing",
        quoted(path.parent_path()), std::strerror(EINVAL));
  }
  if (fd.get() < 0) {
    throw Error(ErrorKind::kIo,
                "storage roofline: cannot create " + quoted(path) + ": " + std::strerror(errno));
  }
  const uint64_t total = (bytes + kAlign - 1) / kAlign * kAlign;
  for (uint64_t at = 0; at < total;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kRooflineBlock, total - at));
    std::memcpy(buf.data(), &at, sizeof at);  // every block differs
    const ssize_t done = ::pwrite(fd.get(), buf.data(), n, static_cast<off_t>(at));
    if (done < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && stats.direct) {
        fall_back(EINVAL);
        if (fd.get() < 0) break;
        continue;
      }
      throw Error(ErrorKind::kIo,
                  "storage roofline: cannot write " + quoted(path) + ": " + std::strerror(errno));
    }
    at += static_cast<uint64_t>(done);
  }
  if (fd.get() < 0) {
    throw Error(ErrorKind::kIo,
                "storage roofline: cannot write " + quoted(path) + ": " + std::strerror(errno));
  }
  eplb::fs::sync_data(fd.get(), path);
  if (!stats.direct) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  return stats;
}

long long micros_since(core::Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(core::Clock::now() - start).count();
}

std::string scratch_name(int rank, std::string_view what) {
  return fmt::format(".eplb-roofline-{}-{}-{}", ::getpid(), rank, what);
}

}  // namespace

std::vector<fs::path> files_under(const fs::path& path) {
  std::vector<fs::path> files;
  std::error_code ec;
  const auto status = fs::symlink_status(path, ec);
  if (fs::is_regular_file(status)) return {path};
  if (!fs::exists(status)) {
    throw Error(ErrorKind::kInput, "storage roofline: " + quoted(path) + " does not exist");
  }
  if (!fs::is_directory(status)) {
    throw Error(ErrorKind::kIo,
                "storage roofline: " + quoted(path) + " is neither a regular file nor a directory");
  }
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) files.push_back(it->path());
  }
  if (ec) {
    throw Error(ErrorKind::kIo,
                "storage roofline: cannot list " + quoted(path) + ": " + ec.message());
  }
  std::sort(files.begin(), files.end());
  return files;
}

uint64_t total_size(const std::vector<fs::path>& files) {
  uint64_t total = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const uint64_t size = fs::file_size(f, ec);
    if (!ec) total += size;
  }
  return total;
}

namespace {

// What one process's streams did, read and write.
struct Streams {
  StreamStats read, write;
};

// Concurrent: process r reads blocks [N r / P, N (r + 1) / P) and writes its share, all at
// once; the result's concurrent_seconds is the slowest process's time.
Streams concurrent_streams(const runtime::Group& group, const RooflineOptions& options,
                           const std::vector<Block>& blocks, RooflineResult& result) {
  int rank = 0, size = 1;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  EPLB_MPI_CHECK(MPI_Comm_size(group.comm, &size));
  const auto P = static_cast<uint64_t>(size);
  const auto me = static_cast<uint64_t>(rank);
  const uint64_t n = blocks.size();
  std::span<const Block> mine(blocks.data() + n * me / P, n * (me + 1) / P - n * me / P);
  const uint64_t my_write = result.write_bytes * (me + 1) / P - result.write_bytes * me / P;
  Streams streams;
  ScratchFile scratch{options.write_dir / scratch_name(rank, "concurrent")};
  runtime::barrier(group, "storage roofline: start of the concurrent streams");
  const auto start = core::Clock::now();
  core::ProblemList problems(ErrorKind::kIo), reader_problems(ErrorKind::kIo);
  std::thread reader([&] {
    job::capture(reader_problems, [&] { streams.read = read_blocks(options.read_files, mine); });
  });
  job::capture(problems, [&] { streams.write = write_file(scratch.path, my_write); });
  reader.join();
  const double seconds = static_cast<double>(micros_since(start)) / 1e6;
  problems.append(reader_problems);
  ::unlink(scratch.path.c_str());
  scratch.path.clear();
  job::agree(group, problems, "storage roofline: the concurrent streams");
  job::RankFigures figures;
  figures.max_seconds(result.concurrent_seconds, seconds);
  figures.reduce(group, "storage roofline: the slowest process");
  return streams;
}

// Single stream: rank 0 reads everything, then writes everything.
Streams single_stream(const runtime::Group& group, const RooflineOptions& options,
                      const std::vector<Block>& blocks, RooflineResult& result) {
  Streams streams;
  double read_seconds = 0, write_seconds = 0;
  core::ProblemList problems(ErrorKind::kIo);
  if (core::log::is_leader()) {
    job::capture(problems, [&] {
      auto t = core::Clock::now();
      streams.read = read_blocks(options.read_files, blocks);
      read_seconds = static_cast<double>(micros_since(t)) / 1e6;
      ScratchFile one{options.write_dir / scratch_name(0, "single")};
      t = core::Clock::now();
      streams.write = write_file(one.path, result.write_bytes);
      write_seconds = static_cast<double>(micros_since(t)) / 1e6;
    });
  }
  job::agree(group, problems, "storage roofline: the single stream");
  job::RankFigures figures;
  figures.max_seconds(result.single_read_seconds, read_seconds);
  figures.max_seconds(result.single_write_seconds, write_seconds);
  figures.reduce(group, "storage roofline: the single stream");
  return streams;
}

// How it was done: the fallbacks any process took (same filesystems: rank 0's notes stand
// for all), and memory filesystems.
void describe_how(const runtime::Group& group, const RooflineOptions& options,
                  const Streams& concurrent, const Streams& single, RooflineResult& result) {
  const bool read_direct = concurrent.read.direct && single.read.direct;
  const bool write_direct = concurrent.write.direct && single.write.direct;
  result.read_direct = runtime::all_true(group, read_direct, "storage roofline: direct reads");
  result.write_direct = runtime::all_true(group, write_direct, "storage roofline: direct writes");
  for (const auto* s : {&concurrent.read, &single.read, &concurrent.write, &single.write}) {
    if (!s->note.empty() &&
        std::find(result.notes.begin(), result.notes.end(), s->note) == result.notes.end()) {
      result.notes.push_back(s->note);
    }
  }
  if (!options.read_files.empty()) {
    if (auto kind = memory_filesystem(options.read_files.front().parent_path())) {
      result.notes.push_back("the input is on " + *kind + ": reads come from memory");
    }
  }
  if (auto kind = memory_filesystem(options.write_dir)) {
    result.notes.push_back("the output directory is on " + *kind + ": writes go to memory");
  }
  if (!result.read_direct && core::log::is_leader() && read_direct) {
    result.notes.push_back("another process could not read with O_DIRECT (see its log)");
  }
}

}  // namespace

RooflineResult measure_storage_roofline(const runtime::Group& group,
                                        const RooflineOptions& options) {
  int size = 1;
  EPLB_MPI_CHECK(MPI_Comm_size(group.comm, &size));
  RooflineResult result;
  result.streams = size;
  std::vector<Block> blocks;
  core::ProblemList problems(ErrorKind::kIo);
  job::capture(problems, [&] { blocks = blocks_of(options.read_files, options.read_bytes); });
  job::agree(group, problems, "storage roofline: listing the input");
  for (const Block& b : blocks) result.read_bytes += b.length;
  result.write_bytes = options.write_bytes ? options.write_bytes : result.read_bytes;

  const Streams concurrent = concurrent_streams(group, options, blocks, result);
  const Streams single =
      options.single_stream ? single_stream(group, options, blocks, result) : Streams{};
  describe_how(group, options, concurrent, single, result);
  return result;
}

namespace {

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

std::string rate(uint64_t bytes, double seconds) {
  return seconds > 0 ? core::format_rate(static_cast<double>(bytes) / seconds) : "-";
}

}  // namespace

void log_roofline(const RooflineResult& r, std::string_view job, double job_seconds) {
  namespace log = core::log;
  log::info(
      "storage roofline: {} read ({}) and {} written ({}), 1 MiB blocks; "
      "{} processes",
      core::format_bytes(static_cast<double>(r.read_bytes)),
      r.read_direct ? "O_DIRECT" : "buffered",
      core::format_bytes(static_cast<double>(r.write_bytes)),
      r.write_direct ? "O_DIRECT" : "buffered", r.streams);
  log::info("  concurrent     {:.2f} s ({} reading and {} writing streams at once, {} in)",
            r.concurrent_seconds, r.streams, r.streams,
            rate(r.read_bytes + r.write_bytes, r.concurrent_seconds));
  if (r.single_seconds() > 0) {
    log::info("  single stream  {:.2f} s (read {:.2f} s at {}, then write {:.2f} s at {})",
              r.single_seconds(), r.single_read_seconds, rate(r.read_bytes, r.single_read_seconds),
              r.single_write_seconds, rate(r.write_bytes, r.single_write_seconds));
  }
  for (const auto& note : r.notes) log::info("  note: {}", note);
  if (job_seconds > 0) {
    log::info("  {} took {:.2f} s: {:.2f}x the concurrent roofline, {:.2f}x the single stream", job,
              job_seconds, ratio(job_seconds, r.concurrent_seconds),
              ratio(job_seconds, r.single_seconds()));
  }
}

nlohmann::json roofline_json(const RooflineResult& r, double job_seconds) {
  nlohmann::json j = {{"streams", r.streams},
                      {"block_bytes", kRooflineBlock},
                      {"bytes", {{"read", r.read_bytes}, {"written", r.write_bytes}}},
                      {"io",
                       {{"read", r.read_direct ? "direct" : "buffered"},
                        {"write", r.write_direct ? "direct" : "buffered"}}},
                      {"seconds",
                       {{"concurrent", r.concurrent_seconds},
                        {"single_stream", r.single_seconds()},
                        {"single_stream_read", r.single_read_seconds},
                        {"single_stream_write", r.single_write_seconds}}},
                      {"notes", r.notes}};
  if (job_seconds > 0) {
    j["job_seconds"] = job_seconds;
    j["over_concurrent"] = ratio(job_seconds, r.concurrent_seconds);
    j["over_single_stream"] = ratio(job_seconds, r.single_seconds());
  }
  return j;
}

}  // namespace eplb::bench
