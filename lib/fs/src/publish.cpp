// Atomic publication of small files (eplb/fs/publish.hpp).
#include "eplb/fs/publish.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "eplb/core/error.hpp"
#include "eplb/core/fault.hpp"
#include "eplb/fs/create.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/fs/transfer.hpp"
#include "path_names.hpp"

namespace eplb::fs {
namespace {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;
using core::quoted;

// Names tried before giving up on a directory where every one is taken.
constexpr int kNameAttempts = 100;

// A new temporary file next to `target`: ".NAME.tmp.<pid>.<n>", the next free n.
sfs::path create_temporary(const sfs::path& target, core::Fd& fd) {
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0;; ++attempt) {
    // Same directory as the target, so rename() is atomic; pid + counter keep writers apart.
    const sfs::path tmp = detail::sibling(
        target, ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
    Created created = try_create_new_file(AT_FDCWD, tmp, O_WRONLY, 0666);
    if (created.error == 0) {
      fd = std::move(created.fd);
      return tmp;
    }
    if (created.error != EEXIST || attempt + 1 == kNameAttempts) {
      throw Error(ErrorKind::kIo,
                  "cannot create " + quoted(tmp) + ": " + std::strerror(created.error));
    }
  }
}

// Writes, fsyncs and closes `content` into the new file `tmp`; removes it on failure.
void fill_temporary(core::Fd& fd, const sfs::path& tmp, const std::string& content) {
  try {
    const Transfer t = pwrite_full(fd.get(), std::as_bytes(std::span(content)), 0);
    if (!t.complete) {
      throw Error(ErrorKind::kIo, "cannot write " + quoted(tmp) + ": " +
                                      (t.error != 0 ? std::strerror(t.error) : "no progress"));
    }
    sync_file(fd.get(), tmp);
    // close() can report a deferred write error (NFS): it counts.
    close_checked(fd);
  } catch (const Error& e) {
    ::unlink(tmp.c_str());
    if (fd.empty() && e.problems().front().rfind("close: ", 0) == 0) {
      throw core::with_prefix(e, "cannot close " + quoted(tmp) + ": ");
    }
    throw;
  }
}

}  // namespace

void write_file_atomic(const sfs::path& path, const std::string& content) {
  const sfs::path target = detail::normalized(path);
  core::Fd fd;
  const sfs::path tmp = create_temporary(target, fd);
  fill_temporary(fd, tmp, content);
  core::fault::kill_point("renaming-" + target.filename().string());
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot rename " + quoted(tmp) + " to " + quoted(target) + ": " +
                                    std::strerror(err));
  }
  fsync_path(detail::parent_dir(target));
}

int remove_stale_temporaries(const sfs::path& path) {
  const sfs::path target = detail::normalized(path);
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  const sfs::path dir = detail::parent_dir(target);
  const auto digits = [](std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  int removed = 0;
  std::error_code ec;
  for (sfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    // Only our own pattern: digits, one dot, digits.
    const std::string_view rest = std::string_view(name).substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1))) {
      continue;
    }
    if (::unlink(it->path().c_str()) != 0 && errno != ENOENT) {
      throw Error(ErrorKind::kIo, "cannot remove the stale temporary file " + quoted(it->path()) +
                                      ": " + std::strerror(errno));
    }
    ++removed;
  }
  if (ec) throw Error(ErrorKind::kIo, "cannot list " + quoted(dir) + ": " + ec.message());
  if (removed > 0) fsync_path(dir);
  return removed;
}

}  // namespace eplb::fs
