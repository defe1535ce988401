// The journal of an in-place update (eplb/io/journal.hpp, docs/FORMAT.md).
//
// File layout, little-endian:
//   header   "EPLBJNL1" | u32 version (2; 1 is still read) | u32 ep_rank | u32 num_journals |
//            u32 name_len | u64 shard_size | name (name_len bytes, the shard's file name)
//   records  u32 kind | u32 0 | u64 offset | u64 length | length bytes
//            kind 1: patch (bytes for the shard at offset); kind 2: manifest.json (offset 0);
//            kind 4 (version 2): copy, `length` bytes of payload: u64 row length |
//            u64 source offset | u64 expected xxh3 | u32 source name length | u32 0 |
//            source shard's file name; the row goes to the shard at offset
//   commit   u32 kind 3 | u32 0 | u64 number of records before it | u64 xxh3 of every byte
//            before the commit record; nothing may follow it.
#include "eplb/io/journal.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "eplb/core/error.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/core/fd.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/direct_io.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/fs/output_owner.hpp"
#include "eplb/fs/publish.hpp"
#include "eplb/fs/transfer.hpp"
#include "eplb/io/manifest.hpp"
#include "xxh3.hpp"

namespace eplb::io {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorKind;
// Moved to lib/fs (issue 22): the output-name lock, durability and atomic publish.
using eplb::fs::fsync_path;
using eplb::fs::lock_path_for;
using eplb::fs::OwnerInfo;
using eplb::fs::remove_stale_temporaries;
using eplb::fs::write_file_atomic;

static_assert(std::endian::native == std::endian::little,
              "the journal is written in host byte order, which must be little-endian");

constexpr char kMagic[8] = {'E', 'P', 'L', 'B', 'J', 'N', 'L', '1'};
constexpr uint32_t kVersion = 2;
constexpr uint32_t kFirstVersion = 1;  // no copy records
constexpr uint32_t kPatch = 1, kManifest = 2, kCommit = 3, kCopy = 4;
constexpr size_t kCopyFixed = 8 + 8 + 8 + 4 + 4;
constexpr size_t kHeaderFixed = 8 + 4 * 4 + 8;
constexpr size_t kRecordHeader = 4 + 4 + 8 + 8;
constexpr size_t kChunk = size_t{4} << 20;

using core::quoted;

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw Error(ErrorKind::kIo, what + ": " + std::strerror(err));
}

fs::path normalized(const fs::path& path) {
  fs::path p = path.lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

int open_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open directory " + quoted(dir), errno);
  return fd;
}

using core::Fd;

void write_all(int fd, const void* data, size_t size, const fs::path& path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot write " + quoted(path), errno);
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void pwrite_all(int fd, const std::byte* data, size_t size, uint64_t offset, const fs::path& path) {
  const eplb::fs::Transfer t = eplb::fs::pwrite_full(fd, {data, size}, offset);
  if (t.complete) return;
  throw Error(ErrorKind::kIo, "cannot write " + quoted(path) + ": " +
                                  (t.error != 0 ? std::strerror(t.error) : "no progress"));
}

// Reads exactly size bytes at offset; false at end of file.
bool pread_all(int fd, std::byte* data, size_t size, uint64_t offset, const fs::path& path) {
  const eplb::fs::Transfer t = eplb::fs::pread_full(fd, {data, size}, offset);
  if (t.error != 0) throw_errno("cannot read " + quoted(path), t.error);
  return t.complete;
}

void fsync_fd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0 && errno != EINVAL) throw_errno("cannot fsync " + quoted(path), errno);
}

// An XXH3-64 streaming state, freed on scope exit.
struct HashState {
  XXH3_state_t* state = XXH3_createState();
  HashState() { XXH3_64bits_reset(state); }
  ~HashState() { XXH3_freeState(state); }
  HashState(const HashState&) = delete;
  HashState& operator=(const HashState&) = delete;
};

template <typename T>
T load(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// One journal as read back: valid only if complete.
struct ParsedJournal {
  fs::path path;
  uint32_t version = 0;
  int32_t ep_rank = -1;
  int32_t num_journals = 0;
  std::string shard_name;
  uint64_t shard_size = 0;
  struct Record {
    uint32_t kind;
    uint64_t offset;
    uint64_t length;
    uint64_t pos;  // of its bytes in the journal
  };
  std::vector<Record> records;
  bool complete = false;
  std::string why_incomplete;
};

// Reads and validates a journal. Never throws for content (an incomplete or damaged journal
// is reported in why_incomplete); throws kIo when the file cannot be read.
ParsedJournal parse_journal(int dir_fd, const std::string& name, const fs::path& path) {
  ParsedJournal j;
  j.path = path;
  const int raw = ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (raw < 0) throw_errno("cannot open journal " + quoted(path), errno);
  Fd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot examine " + quoted(path), errno);
  if (!S_ISREG(st.st_mode)) {
    j.why_incomplete = "not a regular file";
    return j;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::byte head[kHeaderFixed];
  if (!pread_all(fd.get(), head, sizeof(head), 0, path) || std::memcmp(head, kMagic, 8) != 0 ||
      (load<uint32_t>(head + 8) != kVersion && load<uint32_t>(head + 8) != kFirstVersion)) {
    j.why_incomplete = "no complete header";
    return j;
  }
  j.version = load<uint32_t>(head + 8);
  j.ep_rank = static_cast<int32_t>(load<uint32_t>(head + 12));
  j.num_journals = static_cast<int32_t>(load<uint32_t>(head + 16));
  const uint32_t name_len = load<uint32_t>(head + 20);
  j.shard_size = load<uint64_t>(head + 24);
  if (name_len == 0 || name_len > 255 || kHeaderFixed + name_len > size) {
    j.why_incomplete = "no complete header";
    return j;
  }
  j.shard_name.resize(name_len);
  pread_all(fd.get(), reinterpret_cast<std::byte*>(j.shard_name.data()), name_len, kHeaderFixed,
            path);
  if (j.shard_name.find('/') != std::string::npos || j.shard_name[0] == '.') {
    j.why_incomplete = "a shard name that is not a plain file name";
    return j;
  }
  // Walk the records; the commit record's hash covers everything before it.
  HashState hs;
  XXH3_state_t* state = hs.state;
  std::vector<std::byte> buf(kChunk);
  uint64_t hashed = 0;
  const auto hash_up_to = [&](uint64_t end) {
    while (hashed < end) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, end - hashed));
      pread_all(fd.get(), buf.data(), n, hashed, path);
      XXH3_64bits_update(state, buf.data(), n);
      hashed += n;
    }
  };
  uint64_t pos = kHeaderFixed + name_len;
  while (true) {
    std::byte rec[kRecordHeader];
    if (pos + kRecordHeader > size || !pread_all(fd.get(), rec, sizeof(rec), pos, path)) {
      j.why_incomplete = "no commit record";
      break;
    }
    const uint32_t kind = load<uint32_t>(rec);
    const uint64_t offset = load<uint64_t>(rec + 8), length = load<uint64_t>(rec + 16);
    if (load<uint32_t>(rec + 4) != 0) {  // reserved: a damaged record
      j.why_incomplete = "a damaged record";
      break;
    }
    if (kind == kCommit) {
      hash_up_to(pos);
      if (offset != j.records.size() || length != XXH3_64bits_digest(state)) {
        j.why_incomplete = "a commit record that does not match the journal's content";
      } else if (pos + kRecordHeader != size) {
        j.why_incomplete = "bytes after the commit record";
      } else {
        j.complete = true;
      }
      break;
    }
    const bool known = kind == kPatch || kind == kManifest || (kind == kCopy && j.version >= 2);
    if (!known || length > size - pos - kRecordHeader) {
      j.why_incomplete = "no commit record";  // a record cut short by the crash
      break;
    }
    j.records.push_back({kind, offset, length, pos + kRecordHeader});
    pos += kRecordHeader + length;
  }
  return j;
}

// Names in the journal directory (no "." or "..").
std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(dir) + ": " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

// A copy record as read back.
struct CopyRecord {
  uint64_t offset = 0;  // in the journal's shard
  uint64_t length = 0;
  std::string source;  // the source shard's file name
  uint64_t source_offset = 0;
  uint64_t xxh3 = 0;
};

CopyRecord read_copy(int journal_fd, const ParsedJournal& j, const ParsedJournal::Record& r) {
  const auto damaged = [&](const std::string& why) {
    return Error(ErrorKind::kInput, "journal " + quoted(j.path) + ": the copy record to " +
                                        std::to_string(r.offset) + " " + why);
  };
  if (r.length < kCopyFixed || r.length > kCopyFixed + 255) throw damaged("is damaged");
  std::vector<std::byte> payload(static_cast<size_t>(r.length));
  pread_all(journal_fd, payload.data(), payload.size(), r.pos, j.path);
  CopyRecord c;
  c.offset = r.offset;
  c.length = load<uint64_t>(payload.data());
  c.source_offset = load<uint64_t>(payload.data() + 8);
  c.xxh3 = load<uint64_t>(payload.data() + 16);
  const uint32_t name_len = load<uint32_t>(payload.data() + 24);
  if (name_len == 0 || kCopyFixed + name_len != r.length) throw damaged("is damaged");
  c.source.assign(reinterpret_cast<const char*>(payload.data() + kCopyFixed), name_len);
  if (c.source.find('/') != std::string::npos || c.source[0] == '.' ||
      c.source.find('\0') != std::string::npos) {
    throw damaged("names a source that is not a plain file name");
  }
  if (c.offset > j.shard_size || c.length > j.shard_size - c.offset) {
    throw damaged("lies beyond the shard");
  }
  return c;
}

// Rolls the copy records of `j` forward into `out` (its shard): a destination that already
// holds its expected bytes is left alone, else the source is read, checked and written.
// Returns the bytes written.
uint64_t apply_copies(const fs::path& checkpoint, const ParsedJournal& j, int journal_fd, int out,
                      const fs::path& shard) {
  std::vector<std::pair<std::string, Fd>> sources;  // opened once each
  const auto source_fd = [&](const std::string& name) {
    for (const auto& [n, fd] : sources) {
      if (n == name) return fd.get();
    }
    const fs::path path = checkpoint / name;
    const int raw = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (raw < 0) throw_errno("cannot open " + quoted(path) + ", a source of rows to copy", errno);
    sources.emplace_back(name, Fd(raw));
    return raw;
  };
  std::vector<std::byte> buf;
  uint64_t written = 0;
  bool first = true;
  for (const auto& r : j.records) {
    if (r.kind != kCopy) continue;
    const CopyRecord c = read_copy(journal_fd, j, r);
    buf.resize(static_cast<size_t>(c.length));
    // Already written (the run or an earlier recovery got this far): leave it.
    if (pread_all(out, buf.data(), buf.size(), c.offset, shard) &&
        detail::xxh3_64(buf.data(), buf.size()) == c.xxh3) {
      continue;
    }
    // A test kill point between two copies: some rows new, others torn or still old.
    if (!first) core::fault::kill_point("recovery-copying");
    first = false;
    const fs::path source = checkpoint / c.source;
    if (!pread_all(source_fd(c.source), buf.data(), buf.size(), c.source_offset, source)) {
      throw Error(ErrorKind::kInput, quoted(source) + " ends before the " +
                                         std::to_string(c.length) + " bytes at " +
                                         std::to_string(c.source_offset) + " that journal " +
                                         quoted(j.path) + " copies from it");
    }
    const uint64_t have = detail::xxh3_64(buf.data(), buf.size());
    if (have != c.xxh3) {
      throw Error(ErrorKind::kInput,
                  fmt::format("cannot finish the interrupted update: the {} bytes at {} of {}, "
                              "to be copied to {} of {} (journal {}), have xxh3 {:016x}, not "
                              "the expected {:016x}: the source was modified or damaged; "
                              "restore the checkpoint from a copy",
                              c.length, c.source_offset, quoted(source), c.offset, quoted(shard),
                              quoted(j.path), have, c.xxh3));
    }
    pwrite_all(out, buf.data(), buf.size(), c.offset, shard);
    written += c.length;
  }
  return written;
}

// Applies the copy records (`copies`) and/or the patches (`patches`) of `j`, then fsyncs the
// shard. Returns the bytes copied by copy records.
uint64_t apply_parsed(const fs::path& checkpoint, const ParsedJournal& j, bool copies = true,
                      bool patches = true) {
  EPLB_ASSERT(j.complete);
  const fs::path shard = checkpoint / j.shard_name;
  const int raw = ::open(shard.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (raw < 0) throw_errno("cannot open " + quoted(shard) + " to update it", errno);
  Fd out(raw);
  struct stat st {};
  if (::fstat(out.get(), &st) != 0) throw_errno("cannot examine " + quoted(shard), errno);
  if (static_cast<uint64_t>(st.st_size) != j.shard_size) {
    throw Error(ErrorKind::kInput,
                quoted(shard) + " is " + std::to_string(st.st_size) + " bytes, but its journal " +
                    quoted(j.path) + " was written for " + std::to_string(j.shard_size) +
                    ": it was modified after the update began; restore it from a copy");
  }
  const int jraw = ::open(j.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (jraw < 0) throw_errno("cannot open journal " + quoted(j.path), errno);
  Fd in(jraw);
  const uint64_t copied = copies ? apply_copies(checkpoint, j, in.get(), out.get(), shard) : 0;
  std::vector<std::byte> buf;
  bool first = true;
  for (const auto& r : j.records) {
    if (r.kind != kPatch || !patches) continue;
    // A test kill point between two overwrites: some rows new, others still old.
    if (!first) core::fault::kill_point("overwriting");
    first = false;
    if (r.offset > j.shard_size || r.length > j.shard_size - r.offset) {
      throw Error(ErrorKind::kInput, "journal " + quoted(j.path) + ": a patch at " +
                                         std::to_string(r.offset) + " lies beyond the shard");
    }
    for (uint64_t done = 0; done < r.length;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, r.length - done));
      buf.resize(n);
      pread_all(in.get(), buf.data(), n, r.pos + done, j.path);
      pwrite_all(out.get(), buf.data(), n, r.offset + done, shard);
      done += n;
    }
  }
  fsync_fd(out.get(), shard);
  return copied;
}

std::optional<std::string> manifest_text(const ParsedJournal& j) {
  for (const auto& r : j.records) {
    if (r.kind != kManifest) continue;
    const int raw = ::open(j.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (raw < 0) throw_errno("cannot open journal " + quoted(j.path), errno);
    Fd in(raw);
    std::string text(static_cast<size_t>(r.length), '\0');
    pread_all(in.get(), reinterpret_cast<std::byte*>(text.data()), text.size(), r.pos, j.path);
    return text;
  }
  return std::nullopt;
}

}  // namespace

fs::path journal_dir_for(const fs::path& checkpoint) {
  return normalized(checkpoint) / kJournalDirName;
}

std::string journal_file_name(int32_t ep_rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank-%05d", static_cast<int>(ep_rank));
  return buf;
}

bool has_journal(const fs::path& checkpoint) noexcept {
  struct stat st {};
  return ::lstat(journal_dir_for(checkpoint).c_str(), &st) == 0;
}

CheckpointLock::CheckpointLock(const fs::path& checkpoint) : checkpoint_(normalized(checkpoint)) {
  fs::path parent = checkpoint_.parent_path();
  if (parent.empty()) parent = ".";
  parent_fd_ = open_dir(parent);
  try {
    std::string previous;
    lock_fd_ = eplb::fs::take_lock(parent_fd_, checkpoint_, previous).release();
    const std::string text = OwnerInfo::current().to_text();
    if (::ftruncate(lock_fd_, 0) != 0 ||
        ::pwrite(lock_fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      throw_errno("cannot write lock file " + quoted(lock_path_for(checkpoint_)), errno);
    }
  } catch (...) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    ::close(parent_fd_);
    throw;
  }
}

CheckpointLock::~CheckpointLock() {
  struct stat mine {
  }, now{};
  const std::string name = lock_path_for(checkpoint_).filename();
  if (::fstat(lock_fd_, &mine) == 0 &&
      ::fstatat(parent_fd_, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
      mine.st_dev == now.st_dev && mine.st_ino == now.st_ino) {
    ::unlinkat(parent_fd_, name.c_str(), 0);
  }
  ::close(lock_fd_);
  ::close(parent_fd_);
}

void create_journal_dir(const fs::path& checkpoint) {
  Fd dir(open_dir(checkpoint));
  if (::mkdirat(dir.get(), kJournalDirName, 0700) != 0) {
    throw_errno("cannot create the journal " + quoted(journal_dir_for(checkpoint)), errno);
  }
  fsync_fd(dir.get(), checkpoint);
}

void remove_journal_dir(const fs::path& checkpoint) {
  const fs::path dir = journal_dir_for(checkpoint);
  Fd ckpt(open_dir(checkpoint));
  struct stat st {};
  if (::fstatat(ckpt.get(), kJournalDirName, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    throw_errno("cannot examine " + quoted(dir), errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    throw Error(ErrorKind::kIo, quoted(dir) + " is not a directory: remove it by hand");
  }
  Fd jdir(open_dir(dir));
  for (const std::string& name : list_dir(dir)) {
    if (::unlinkat(jdir.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
      throw_errno("cannot remove " + quoted(dir / name), errno);
    }
  }
  if (::unlinkat(ckpt.get(), kJournalDirName, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    throw_errno("cannot remove " + quoted(dir), errno);
  }
  fsync_fd(ckpt.get(), checkpoint);
}

JournalWriter::JournalWriter(const fs::path& checkpoint, int32_t ep_rank, int32_t num_journals,
                             const std::string& shard_name, uint64_t shard_size)
    : shard_size_(shard_size) {
  EPLB_ASSERT(ep_rank >= 0 && num_journals > ep_rank);
  EPLB_ASSERT(!shard_name.empty() && shard_name.size() <= 255);
  const fs::path dir = journal_dir_for(checkpoint);
  const std::string name = journal_file_name(ep_rank);
  path_ = dir / name;
  Fd dir_fd(open_dir(dir));
  fd_ = ::openat(dir_fd.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 0600);
  if (fd_ < 0) throw_errno("cannot create journal " + quoted(path_), errno);
  hash_state_ = XXH3_createState();
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(hash_state_));
  std::byte head[kHeaderFixed];
  const uint32_t fields[4] = {kVersion, static_cast<uint32_t>(ep_rank),
                              static_cast<uint32_t>(num_journals),
                              static_cast<uint32_t>(shard_name.size())};
  std::memcpy(head, kMagic, 8);
  std::memcpy(head + 8, fields, sizeof(fields));
  std::memcpy(head + 24, &shard_size, 8);
  append(head, sizeof(head));
  append(shard_name.data(), shard_name.size());
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (arena_ != nullptr) ::munmap(arena_, arena_size_);
  XXH3_freeState(static_cast<XXH3_state_t*>(hash_state_));
}

void JournalWriter::append(const void* data, size_t size) {
  write_all(fd_, data, size, path_);
  XXH3_64bits_update(static_cast<XXH3_state_t*>(hash_state_), data, size);
  pos_ += size;
}

void JournalWriter::append_record(uint32_t kind, uint64_t offset,
                                  std::span<const std::byte> payload) {
  EPLB_ASSERT(!committed_);
  std::byte rec[kRecordHeader] = {};
  const uint64_t length = payload.size();
  std::memcpy(rec, &kind, 4);
  std::memcpy(rec + 8, &offset, 8);
  std::memcpy(rec + 16, &length, 8);
  append(rec, sizeof(rec));
  append(payload.data(), payload.size());
  ++num_records_;
}

void JournalWriter::add_patch(uint64_t offset, std::span<const std::byte> bytes) {
  EPLB_ASSERT(offset <= shard_size_ && bytes.size() <= shard_size_ - offset);
  patches_.push_back({offset, bytes.size(), pos_ + kRecordHeader});
  patch_bytes_ += bytes.size();
  append_record(kPatch, offset, bytes);
}

void JournalWriter::add_copy(uint64_t offset, std::span<const std::byte> bytes,
                             const std::string& source_shard, uint64_t source_offset,
                             uint64_t xxh3) {
  EPLB_ASSERT(offset <= shard_size_ && bytes.size() <= shard_size_ - offset);
  EPLB_ASSERT(!source_shard.empty() && source_shard.size() <= 255 &&
              source_shard.find('/') == std::string::npos && source_shard[0] != '.');
  std::vector<std::byte> payload(kCopyFixed + source_shard.size());
  const uint64_t fields[3] = {bytes.size(), source_offset, xxh3};
  const auto name_len = static_cast<uint32_t>(source_shard.size());
  std::memcpy(payload.data(), fields, sizeof(fields));
  std::memcpy(payload.data() + 24, &name_len, 4);
  std::memcpy(payload.data() + kCopyFixed, source_shard.data(), source_shard.size());
  append_record(kCopy, offset, payload);
  constexpr size_t kBlock = eplb::fs::kDirectAlign;
  const size_t capacity = std::max<size_t>(kBlock, (bytes.size() + kBlock - 1) / kBlock * kBlock);
  std::byte* kept = nullptr;
  if (arena_ != nullptr && arena_size_ - arena_used_ >= capacity) {
    kept = arena_ + arena_used_;
    arena_used_ += capacity;
  } else {
    owned_.emplace_back(static_cast<std::byte*>(std::aligned_alloc(kBlock, capacity)), &std::free);
    kept = owned_.back().get();
    if (kept == nullptr) {
      throw Error(ErrorKind::kIo, "cannot allocate " + std::to_string(capacity) +
                                      " bytes to keep a row for " + quoted(path_));
    }
  }
  std::memcpy(kept, bytes.data(), bytes.size());
  copies_.push_back({offset, bytes.size(), kept});
  copy_bytes_ += bytes.size();
}

void JournalWriter::reserve_copies(uint64_t bytes) {
  EPLB_ASSERT(arena_ == nullptr);
  constexpr uint64_t kHuge = uint64_t{2} << 20;
  const auto size = static_cast<size_t>((bytes + kHuge - 1) / kHuge * kHuge);
  if (size == 0) return;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;        // add_copy allocates row by row instead
  ::madvise(p, size, MADV_HUGEPAGE);  // advisory
  arena_ = static_cast<std::byte*>(p);
  arena_size_ = size;
}

void JournalWriter::add_manifest(const std::string& text) {
  append_record(kManifest, 0, std::as_bytes(std::span(text.data(), text.size())));
}

uint64_t JournalWriter::patched_file_xxh3(const fs::path& shard) const {
  // Patches and copies (copy_idx >= 0: its bytes are in memory), by offset.
  struct Range {
    uint64_t offset, length, journal_pos;
    ptrdiff_t copy_idx;
  };
  std::vector<Range> patches;
  for (const Patch& p : patches_) patches.push_back({p.offset, p.length, p.journal_pos, -1});
  for (size_t i = 0; i < copies_.size(); ++i) {
    patches.push_back({copies_[i].offset, copies_[i].length, 0, static_cast<ptrdiff_t>(i)});
  }
  std::sort(patches.begin(), patches.end(),
            [](const Range& a, const Range& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < patches.size(); ++i) {
    EPLB_ASSERT(patches[i - 1].offset + patches[i - 1].length <= patches[i].offset);
  }
  const int raw = ::open(shard.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) throw_errno("cannot open " + quoted(shard), errno);
  Fd in(raw);
  HashState hs;
  XXH3_state_t* state = hs.state;
  std::vector<std::byte> buf(kChunk);
  // `length` bytes of `fd` from `at`: the shard's, or the journal's for a patched range.
  const auto feed = [&](int fd, uint64_t at, uint64_t length, const fs::path& path) {
    for (uint64_t done = 0; done < length;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, length - done));
      if (!pread_all(fd, buf.data(), n, at + done, path)) {
        throw Error(ErrorKind::kIo, quoted(path) + " ended early while hashing it");
      }
      XXH3_64bits_update(state, buf.data(), n);
      done += n;
    }
  };
  uint64_t at = 0;
  for (const Range& p : patches) {
    feed(in.get(), at, p.offset - at, shard);
    if (p.copy_idx >= 0) {
      XXH3_64bits_update(state, copies_[static_cast<size_t>(p.copy_idx)].bytes, p.length);
    } else {
      feed(fd_, p.journal_pos, p.length, path_);
    }
    at = p.offset + p.length;
  }
  feed(in.get(), at, shard_size_ - at, shard);
  return XXH3_64bits_digest(state);
}

void JournalWriter::start_writeback() {
  // Advisory: a filesystem without it still gets everything durable from commit()'s fsync.
  ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
}

void JournalWriter::commit() {
  EPLB_ASSERT(!committed_);
  std::byte rec[kRecordHeader] = {};
  const uint32_t kind = kCommit;
  const uint64_t hash = XXH3_64bits_digest(static_cast<XXH3_state_t*>(hash_state_));
  std::memcpy(rec, &kind, 4);
  std::memcpy(rec + 8, &num_records_, 8);
  std::memcpy(rec + 16, &hash, 8);
  write_all(fd_, rec, sizeof(rec), path_);
  fsync_fd(fd_, path_);
  fsync_path(path_.parent_path());
  committed_ = true;
}

void JournalWriter::apply(const fs::path& shard) const {
  overwrite(shard, /*copies=*/true, /*patches=*/true);
}

void JournalWriter::apply_copies(const fs::path& shard) const {
  overwrite(shard, /*copies=*/true, /*patches=*/false);
}

void JournalWriter::apply_patches(const fs::path& shard) const {
  overwrite(shard, /*copies=*/false, /*patches=*/true);
}

void JournalWriter::overwrite(const fs::path& shard, bool copies, bool patches) const {
  EPLB_ASSERT(committed_);
  const int raw = ::open(shard.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  if (raw < 0) throw_errno("cannot open " + quoted(shard) + " to update it", errno);
  Fd out(raw);
  struct stat st {};
  if (::fstat(out.get(), &st) != 0) throw_errno("cannot examine " + quoted(shard), errno);
  if (static_cast<uint64_t>(st.st_size) != shard_size_) {
    throw Error(ErrorKind::kInput, quoted(shard) + " is " + std::to_string(st.st_size) +
                                       " bytes, but its journal was written for " +
                                       std::to_string(shard_size_) + ": it was modified");
  }
  // Whole 4 KiB blocks (the rows: every dataset is 4 KiB-aligned, docs/FORMAT.md) are
  // written with O_DIRECT from aligned memory, past the page cache; the small patches
  // (checksums, ids, checkpoint id), and every patch where the filesystem refuses O_DIRECT,
  // buffered. The fsync below covers both.
  constexpr uint64_t kBlock = eplb::fs::kDirectAlign;
  const int draw = ::open(shard.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_DIRECT);
  Fd direct(draw);  // empty when refused
  uint64_t largest = 0;
  for (const Patch& p : patches_) largest = patches ? std::max(largest, p.length) : 0;
  const size_t capacity = static_cast<size_t>((largest + kBlock - 1) / kBlock * kBlock);
  std::unique_ptr<std::byte, decltype(&std::free)> buf(
      static_cast<std::byte*>(capacity > 0 ? std::aligned_alloc(kBlock, capacity) : nullptr),
      &std::free);
  if (capacity > 0 && buf == nullptr) {
    throw Error(ErrorKind::kIo, "cannot allocate " + std::to_string(capacity) +
                                    " bytes to overwrite " + quoted(shard));
  }
  const auto write = [&](const std::byte* bytes, uint64_t length, uint64_t offset) {
    const auto n = static_cast<size_t>(length);
    const bool whole_blocks = offset % kBlock == 0 && length % kBlock == 0 && n > 0;
    if (whole_blocks && !direct.empty() &&
        eplb::fs::pwrite_direct(direct.get(), {bytes, n}, offset)) {
      return;
    }
    if (whole_blocks) direct = Fd();  // refused (EINVAL): buffered from now on
    pwrite_all(out.get(), bytes, n, offset, shard);
  };
  // Copies first, from memory (aligned already). NOTE: a copy's source is a stable slot or a
  // journaled row, which only the patches write: every copy must be durable on every rank
  // before any rank applies a patch (the engine agrees in between).
  for (size_t i = 0; copies && i < copies_.size(); ++i) {
    if (i > 0) core::fault::kill_point("copying");
    write(copies_[i].bytes, copies_[i].length, copies_[i].offset);
  }
  if (copies && !copies_.empty()) core::fault::kill_point("copied");
  for (size_t i = 0; patches && i < patches_.size(); ++i) {
    if (i > 0) core::fault::kill_point("overwriting");
    const Patch& p = patches_[i];
    pread_all(fd_, buf.get(), static_cast<size_t>(p.length), p.journal_pos, path_);
    write(buf.get(), p.length, p.offset);
  }
  fsync_fd(out.get(), shard);
}

uint64_t apply_journal(const fs::path& checkpoint, int32_t ep_rank) {
  const fs::path dir = journal_dir_for(checkpoint);
  Fd dir_fd(open_dir(dir));
  const std::string name = journal_file_name(ep_rank);
  const ParsedJournal j = parse_journal(dir_fd.get(), name, dir / name);
  if (!j.complete || j.ep_rank != ep_rank) {
    throw Error(ErrorKind::kInput, "journal " + quoted(dir / name) + " is not complete (" +
                                       (j.complete ? "another rank's" : j.why_incomplete) + ")");
  }
  uint64_t bytes = apply_parsed(checkpoint, j);
  for (const auto& r : j.records) bytes += r.kind == kPatch ? r.length : 0;
  return bytes;
}

void replace_manifest(const fs::path& checkpoint, const std::string& text) {
  const fs::path path = normalized(checkpoint) / kManifestName;
  struct stat st {};
  const bool had = ::stat(path.c_str(), &st) == 0;
  write_file_atomic(path, text);
  if (had && ::chmod(path.c_str(), st.st_mode & 07777) != 0) {
    throw_errno("cannot set the mode of " + quoted(path), errno);
  }
}

JournalOutcome recover_journal(const fs::path& checkpoint) {
  const fs::path dir = journal_dir_for(checkpoint);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return JournalOutcome::kNone;
    throw_errno("cannot examine " + quoted(dir), errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    throw Error(ErrorKind::kIo, quoted(dir) + " is not a directory: remove it by hand");
  }
  // Which journals are there, and are they all complete?
  Fd dir_fd(open_dir(dir));
  std::vector<ParsedJournal> journals;
  std::string why_back;
  for (const std::string& name : list_dir(dir)) {
    if (name.rfind("rank-", 0) != 0) continue;  // a leftover temporary file
    journals.push_back(parse_journal(dir_fd.get(), name, dir / name));
    const ParsedJournal& j = journals.back();
    if (why_back.empty() && !j.complete) why_back = "'" + name + "' has " + j.why_incomplete;
    if (why_back.empty() && journal_file_name(j.ep_rank) != name) {
      why_back = "'" + name + "' names EP rank " + std::to_string(j.ep_rank);
    }
  }
  int32_t expected = journals.empty() ? 0 : journals.front().num_journals;
  if (why_back.empty() && journals.empty()) why_back = "it holds no rank's journal";
  for (const auto& j : journals) {
    if (why_back.empty() && j.num_journals != expected) {
      why_back = "its journals disagree on the number of EP ranks";
    }
  }
  if (why_back.empty() && static_cast<int32_t>(journals.size()) != expected) {
    why_back = std::to_string(journals.size()) + " of " + std::to_string(expected) +
               " EP ranks' journals are there";
  }
  std::optional<std::string> manifest;
  if (why_back.empty()) {
    manifest = manifest_text(journals.front());
    if (!manifest) why_back = "rank 0's journal holds no manifest";
  }
  if (!why_back.empty()) {
    // NOTE: no shard byte is overwritten before every journal is complete (the ranks agree
    // on it first), so an incomplete journal means the checkpoint is still the old one.
    remove_journal_dir(checkpoint);
    // A manifest being replaced when the run died: its temporary file goes too.
    remove_stale_temporaries(checkpoint / kManifestName);
    core::log::warn(
        "rolled back an interrupted in-place update of {}: its journal was incomplete ({}); "
        "nothing had been overwritten, the checkpoint is unchanged",
        quoted(checkpoint), why_back);
    return JournalOutcome::kRolledBack;
  }
  // Roll forward: every patch again (idempotent), then the manifest, then the journal goes.
  // Every journal's copies (durable), then every journal's patches: a copy's source may be a
  // journaled row of any shard, intact until its patch is applied.
  uint64_t bytes = 0, copied = 0, copies = 0;
  for (const auto& j : journals) copied += apply_parsed(checkpoint, j, true, false);
  core::fault::kill_point("recovery-copied");
  for (const auto& j : journals) {
    apply_parsed(checkpoint, j, false, true);
    core::fault::kill_point("recovery-" + j.shard_name);
    for (const auto& r : j.records) {
      bytes += r.kind == kPatch ? r.length : 0;
      copies += r.kind == kCopy ? 1 : 0;
    }
  }
  parse_manifest(*manifest, (dir / "rank-00000").string());  // refuse a damaged manifest
  replace_manifest(checkpoint, *manifest);
  // The dead run's temporary file, when it died while replacing the manifest itself.
  remove_stale_temporaries(checkpoint / kManifestName);
  remove_journal_dir(checkpoint);
  core::log::warn(
      "finished an interrupted in-place update of {} from its journal: {} shards, {} bytes "
      "rewritten from the journal, {} copy records ({} bytes copied from their sources, rows "
      "found written already left alone), new manifest written",
      quoted(checkpoint), journals.size(), bytes, copies, copied);
  return JournalOutcome::kRolledForward;
}

}  // namespace eplb::io
