#include "eplb/io/atomic_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "eplb/core/error.hpp"
#include "eplb/core/log.hpp"

namespace eplb::io {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorKind;

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

// "out/" names the directory "out": drop the empty last component.
fs::path normalized(const fs::path& path) {
  fs::path p = path.lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

// "<parent>/.<name><suffix>", a sibling of `output`.
fs::path sibling(const fs::path& output, const std::string& suffix) {
  const fs::path p = normalized(output);
  return p.parent_path() / ("." + p.filename().string() + suffix);
}

// Where a replaced output waits until the new one is in place. If a run dies between the
// two renames, the user's previous output is here: never removed without a successful commit.
fs::path old_path_for(const fs::path& output) { return sibling(output, ".eplb-old"); }

fs::path parent_dir(const fs::path& path) {
  const fs::path parent = normalized(path).parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

bool exists_nofollow(const fs::path& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw Error(ErrorKind::kIo, what + ": " + std::strerror(err));
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw_errno("cannot rename " + quoted(from) + " to " + quoted(to), errno);
  }
}

void write_all(int fd, const std::string& content, const fs::path& path) {
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot write " + quoted(path), errno);
    done += static_cast<size_t>(n);
  }
}

// Writes and fsyncs `content` to a new file `tmp`; removes it on failure.
void write_new_file(const fs::path& tmp, const std::string& content) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw_errno("cannot create " + quoted(tmp), errno);
  try {
    write_all(fd, content, tmp);
    if (::fsync(fd) != 0) throw_errno("cannot fsync " + quoted(tmp), errno);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // close() can report a deferred write error (NFS): it counts.
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_errno("cannot close " + quoted(tmp), err);
  }
}

void fsync_tree(const fs::path& root) {
  std::error_code ec;
  fs::recursive_directory_iterator it(root, ec), end;
  if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(root) + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(root) + ": " + ec.message());
    if (it->is_regular_file() || it->is_directory()) fsync_path(it->path());
  }
  fsync_path(root);
}

}  // namespace

fs::path staging_path_for(const fs::path& output) { return sibling(output, ".eplb-staging"); }

void create_staging(const fs::path& staging, const fs::path& output, bool force) {
  if (exists_nofollow(output) && !force) {
    throw Error(ErrorKind::kUsage,
                "output " + quoted(output) + " already exists; pass --force to replace it");
  }
  if (exists_nofollow(staging)) {
    throw Error(ErrorKind::kUsage, "staging directory " + quoted(staging) +
                                       " exists, left by an earlier run that did not finish; "
                                       "remove it");
  }
  const fs::path old = old_path_for(output);
  if (exists_nofollow(old)) {
    throw Error(ErrorKind::kUsage, "directory " + quoted(old) +
                                       " exists: an earlier run with --force did not finish "
                                       "and it may hold the previous output; check it and "
                                       "remove it");
  }
  if (!fs::is_directory(parent_dir(output))) {
    throw Error(ErrorKind::kUsage, "cannot create output " + quoted(output) + ": directory " +
                                       quoted(parent_dir(output)) + " does not exist");
  }
  if (::mkdir(staging.c_str(), 0777) != 0) {
    throw_errno("cannot create staging directory " + quoted(staging), errno);
  }
}

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open " + quoted(path) + " to fsync it", errno);
  // Some filesystems refuse fsync on directories (EINVAL); nothing more can be done there.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    throw_errno("cannot fsync " + quoted(path), err);
  }
  ::close(fd);
}

void write_file_atomic(const fs::path& path, const std::string& content) {
  static std::atomic<unsigned> counter{0};
  const fs::path target = normalized(path);
  // Same directory as the target, so rename() is atomic; pid + counter keep writers apart.
  const fs::path tmp =
      sibling(target, ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
  write_new_file(tmp, content);
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_errno("cannot rename " + quoted(tmp) + " to " + quoted(target), err);
  }
  fsync_path(parent_dir(target));
}

void commit_staging(const fs::path& staging, const fs::path& output_arg, bool force) {
  const fs::path output = normalized(output_arg);
  // Everything durable before the rename makes it visible.
  fsync_tree(staging);
  const fs::path old = old_path_for(output);
  const bool replace = exists_nofollow(output);
  if (replace && !force) {
    throw Error(ErrorKind::kUsage,
                "output " + quoted(output) + " already exists; pass --force to replace it");
  }
  if (replace) {
    if (exists_nofollow(old)) {
      throw Error(ErrorKind::kUsage, "directory " + quoted(old) + " exists; remove it");
    }
    rename_or_throw(output, old);
  }
  if (std::rename(staging.c_str(), output.c_str()) != 0) {
    const int err = errno;
    if (replace) std::rename(old.c_str(), output.c_str());  // put the user's output back
    throw_errno("cannot rename " + quoted(staging) + " to " + quoted(output), err);
  }
  fsync_path(parent_dir(output));
  if (replace) {
    // The commit has happened; a leftover old copy is worth a warning, not a failure.
    std::error_code ec;
    fs::remove_all(old, ec);
    if (ec) {
      core::log::warn("could not remove the previous output, now at {}: {}; remove it by hand",
                      quoted(old), ec.message());
    }
  }
}

void remove_tree_noexcept(const fs::path& path) noexcept {
  try {
    std::error_code ec;
    fs::remove_all(path, ec);
  } catch (...) {  // bad_alloc: best effort means giving up quietly
  }
}

}  // namespace eplb::io
