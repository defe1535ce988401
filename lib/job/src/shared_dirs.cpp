#include "eplb/job/shared_dirs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <sstream>

#include "eplb/core/log.hpp"
#include "eplb/fs/atomic_dir.hpp"
#include "eplb/job/agreement.hpp"

namespace eplb::job {
namespace fs = std::filesystem;
namespace {

constexpr const char* kPrefix = ".eplb-shared-check.";
constexpr size_t kMaxContent = 128;

std::string random_hex(size_t num_bytes) {
  std::random_device device;  // the kernel's random source on Linux
  std::string out;
  for (size_t i = 0; i < num_bytes; ++i) out += fmt::format("{:02x}", device() & 0xffu);
  return out;
}

// Rank 0's check files, removed when it goes out of scope: after the agreement that every
// rank has read them, or on any failure on the way.
class CheckFiles {
 public:
  CheckFiles() = default;
  CheckFiles(const CheckFiles&) = delete;
  CheckFiles& operator=(const CheckFiles&) = delete;
  ~CheckFiles() {
    for (const auto& path : created_) ::unlink(path.c_str());
  }

  // Returns "NAME CONTENT" for the broadcast, or "-" when this directory is not checked.
  std::string create(const SharedDirectory& dir, core::ProblemList& problems) {
    const std::string name = kPrefix + random_hex(8);
    const std::string content = "eplb-shared-check-" + random_hex(16);  // no space, no newline
    const fs::path path = (dir.path.empty() ? fs::path(".") : dir.path) / name;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int err = errno;
      if (err == ENOENT || err == ENOTDIR) return "-";  // the loaders say it better
      if (dir.may_be_read_only && (err == EROFS || err == EACCES || err == EPERM)) {
        core::log::detail("{} '{}' is not writable ({}): not checked for being shared", dir.role,
                          dir.path.string(), std::strerror(err));
        return "-";
      }
      problems.add(
          fmt::format("{} '{}': cannot create the check file '{}' that shows whether "
                      "every host sees it: {}",
                      dir.role, dir.path.string(), name, std::strerror(err)));
      return "-";
    }
    created_.push_back(path);
    const bool written =
        ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
    const bool synced = written && ::fsync(fd) == 0;
    const int err = errno;
    if (::close(fd) != 0 || !synced) {
      problems.add(fmt::format("{} '{}': cannot write the check file '{}': {}", dir.role,
                               dir.path.string(), name, std::strerror(err)));
      return "-";
    }
    return name + " " + content;
  }

 private:
  std::vector<fs::path> created_;
};

// The problem this process has with rank 0's check file, or "" when it sees it.
std::string read_back(const SharedDirectory& dir, const std::string& name,
                      const std::string& content, const runtime::MpiSession& session) {
  const fs::path path = (dir.path.empty() ? fs::path(".") : dir.path) / name;
  const std::string host0 = session.hosts().empty() ? "?" : session.hosts().front();
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  std::string seen;
  int err = 0;
  if (fd < 0) {
    err = errno;
  } else {
    std::array<char, kMaxContent + 1> buffer{};
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got < 0) err = errno;
    if (got > 0) seen.assign(buffer.data(), static_cast<size_t>(got));
    ::close(fd);
  }
  if (fd >= 0 && err == 0 && seen == content) return {};
  const std::string what = fd < 0 ? fmt::format("does not see rank 0's check file '{}' there ({})",
                                                name, std::strerror(err))
                                  : fmt::format("sees a different '{}' there", name);
  return fmt::format(
      "{} '{}' is not shared with rank 0's host {}: this host ({}) {}; every host must see "
      "the same directory (a shared file system), or run on one host",
      dir.role, dir.path.string(), host0, session.host(), what);
}

}  // namespace

SharedDirectory output_parent(const fs::path& output) {
  const fs::path parent = eplb::fs::staging_path_for(output).parent_path();
  return {parent.empty() ? fs::path(".") : parent, "output's parent directory", false};
}

void check_shared_directories(const runtime::MpiSession& session,
                              const std::vector<SharedDirectory>& dirs) {
  if (session.num_nodes() <= 1 || dirs.empty()) return;
  const runtime::Group group = session.group();
  CheckFiles files;  // rank 0's; removed when this function returns or throws
  core::ProblemList created(core::ErrorKind::kIo);
  std::string tokens;
  if (session.rank() == 0) {
    for (const auto& dir : dirs) tokens += files.create(dir, created) + "\n";
  }
  agree(group, created, "creating the shared-directory check files");
  tokens = runtime::broadcast_string(group, tokens, "sending the shared-directory check files");

  core::ProblemList seen(core::ErrorKind::kIo);
  std::istringstream lines(tokens);
  for (const auto& dir : dirs) {
    std::string line;
    std::getline(lines, line);
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;  // "-": not checked
    auto problem = read_back(dir, line.substr(0, space), line.substr(space + 1), session);
    if (!problem.empty()) seen.add(std::move(problem));
  }
  // NOTE: rank 0 removes its files only after this agreement: every rank has read them.
  agree(group, seen, "checking that the directories are shared by every host");
}

void check_free_space(const runtime::Group& group, const fs::path& dir, uint64_t bytes,
                      std::string_view what, std::string_view remedy) {
  core::ProblemList problems(core::ErrorKind::kIo);
  if (core::log::is_leader()) {
    capture(problems, [&] { eplb::fs::require_free_space(dir, bytes, what, remedy); });
  }
  agree(group, problems, "checking the free space");
}

}  // namespace eplb::job
