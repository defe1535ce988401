// The names next to an output, their owner's description and the committed modes
// (eplb/fs/output_owner.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "eplb/core/error.hpp"
#include "eplb/fs/output_owner.hpp"
#include "owner_detail.hpp"
#include "path_names.hpp"

namespace eplb::fs {

namespace sfs = std::filesystem;
using core::Error;
using core::ErrorKind;

namespace detail {

void cannot_create(const sfs::path& output, const std::string& why) {
  throw Error(ErrorKind::kUsage, "cannot create output " + core::quoted(output) + ": " + why);
}

std::string kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a file";
  if (S_ISDIR(mode)) return "a directory";
  return "a special file";
}

std::optional<struct stat> stat_at(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return st;
  if (errno == ENOENT) return std::nullopt;
  throw Error(ErrorKind::kIo, "cannot examine '" + name + "': " + std::strerror(errno));
}

}  // namespace detail

sfs::path staging_path_for(const sfs::path& output) {
  return detail::sibling(output, ".eplb-staging");
}
sfs::path old_path_for(const sfs::path& output) { return detail::sibling(output, ".eplb-old"); }
sfs::path lock_path_for(const sfs::path& output) { return detail::sibling(output, ".eplb-lock"); }

OwnerInfo OwnerInfo::current() {
  OwnerInfo info;
  char host[256] = {};
  info.host = ::gethostname(host, sizeof(host) - 1) == 0 ? host : "unknown";
  info.pid = static_cast<long>(::getpid());
  for (const char* name : {"SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') {
      info.job_id = value;
      break;
    }
  }
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char when[32] = {};
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &utc);
  info.started = when;
  return info;
}

std::string OwnerInfo::to_text() const {
  return "host=" + host + "\npid=" + std::to_string(pid) + "\njob=" + job_id +
         "\nstarted=" + started + "\n";
}

OwnerInfo OwnerInfo::from_text(const std::string& text) {
  OwnerInfo info;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const size_t eq = line.find('=');
    if (eq != std::string::npos) {
      const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
      if (key == "host") info.host = value;
      if (key == "pid") info.pid = std::strtol(value.c_str(), nullptr, 10);
      if (key == "job") info.job_id = value;
      if (key == "started") info.started = value;
    }
    start = end + 1;
  }
  return info;
}

std::string OwnerInfo::describe() const {
  if (host.empty() && pid == 0) return "owner unknown";
  std::string out = "host " + host + ", pid " + std::to_string(pid);
  if (!job_id.empty()) out += ", job " + job_id;
  if (!started.empty()) out += ", started " + started;
  return out;
}

namespace {

// The process's umask, read without changing it: from /proc/self/status ("Umask:", Linux
// 4.7 and later). umask(2) can only read it by setting it, and between that call and the
// one that restores it, a file another thread creates gets mode 0666 or 0777: a window in
// which the promise "never wider than the umask" breaks. The fallback, for kernels
// without the field, is that read-and-restore.
mode_t current_umask() {
  if (std::FILE* status = std::fopen("/proc/self/status", "re")) {
    char line[256];
    unsigned long mask = 0;
    bool found = false;
    while (!found && std::fgets(line, sizeof(line), status) != nullptr) {
      found = std::sscanf(line, "Umask: %lo", &mask) == 1;
    }
    std::fclose(status);
    if (found) return static_cast<mode_t>(mask & 0777);
  }
  const mode_t mask = ::umask(0);
  ::umask(mask);
  return mask;
}

}  // namespace

OutputModes OutputModes::like(const std::optional<sfs::path>& input_dir) {
  const mode_t mask = current_umask();
  OutputModes modes{static_cast<mode_t>(0777 & ~mask), static_cast<mode_t>(0666 & ~mask)};
  struct stat st {};
  if (input_dir && ::stat(input_dir->c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    modes.dir &= st.st_mode & 0777;
    if (::stat((*input_dir / "manifest.json").c_str(), &st) == 0) modes.file &= st.st_mode & 0666;
  }
  return modes;
}

bool is_checkpoint_dir(const sfs::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  return ::lstat((dir / "manifest.json").c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void remove_tree_noexcept(const sfs::path& path) noexcept {
  try {
    std::error_code ec;
    sfs::remove_all(path, ec);
  } catch (...) {  // bad_alloc: best effort means giving up quietly
  }
}

}  // namespace eplb::fs
