#include "eplb/job/shared_dirs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <sstream>

#include "eplb/core/fd.hpp"
#include "eplb/core/log.hpp"
#include "eplb/fs/create.hpp"
#include "eplb/fs/durable.hpp"
#include "eplb/fs/free_space.hpp"
#include "eplb/fs/output_owner.hpp"
#include "eplb/fs/transfer.hpp"
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
    eplb::fs::Created created = eplb::fs::try_create_new_file(AT_FDCWD, path, O_WRONLY, 0644);
    if (created.error != 0) {
      const int err = created.error;
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
    core::ProblemList failed(core::ErrorKind::kIo);
    const bool written = capture(failed, [&] {
      const eplb::fs::Transfer t =
          eplb::fs::pwrite_full(created.fd.get(), std::as_bytes(std::span(content)), 0);
      if (!t.complete) {
        throw core::Error(core::ErrorKind::kIo,
                          t.error != 0 ? std::strerror(t.error) : "no progress");
      }
      eplb::fs::sync_file(created.fd.get(), path);
      eplb::fs::close_checked(created.fd);
    });
    if (!written) {
      problems.add(fmt::format("{} '{}': cannot write the check file '{}': {}", dir.role,
                               dir.path.string(), name, failed.problems().front()));
      return "-";
    }
    return name + " " + content;
  }

 private:
  std::vector<fs::path> created_;
};

// The problem this process has with rank 0's check file, or "" when it sees it.
std::string read_back(const SharedDirectory& dir, const std::string& name,
                      const std::string& content, const HostNames& hosts) {
  const fs::path path = (dir.path.empty() ? fs::path(".") : dir.path) / name;
  const std::string& host0 = hosts.rank0;
  const core::Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  std::string seen;
  int err = fd.empty() ? errno : 0;
  if (!fd.empty()) {
    std::array<std::byte, kMaxContent + 1> buffer{};
    const eplb::fs::Transfer got = eplb::fs::pread_full(fd.get(), buffer, 0);
    if (!got.complete) err = got.error;
    seen.assign(reinterpret_cast<const char*>(buffer.data()), got.done);
  }
  if (!fd.empty() && err == 0 && seen == content) return {};
  const std::string what = fd.empty()
                               ? fmt::format("does not see rank 0's check file '{}' there ({})",
                                             name, std::strerror(err))
                               : fmt::format("sees a different '{}' there", name);
  return fmt::format(
      "{} '{}' is not shared with rank 0's host {}: this host ({}) {}; every host must see "
      "the same directory (a shared file system), or run on one host",
      dir.role, dir.path.string(), host0, hosts.mine, what);
}

}  // namespace

SharedDirectory output_parent(const fs::path& output) {
  const fs::path parent = eplb::fs::staging_path_for(output).parent_path();
  return {parent.empty() ? fs::path(".") : parent, "output's parent directory", false};
}

void check_shared_directories(const runtime::MpiSession& session,
                              const std::vector<SharedDirectory>& dirs) {
  if (session.num_nodes() <= 1 || dirs.empty()) return;
  check_directories_seen(session.group(), dirs,
                         {session.hosts().empty() ? "?" : session.hosts().front(), session.host()});
}

void check_directories_seen(const runtime::Group& group, const std::vector<SharedDirectory>& dirs,
                            const HostNames& hosts) {
  int rank = 0;
  EPLB_MPI_CHECK(MPI_Comm_rank(group.comm, &rank));
  CheckFiles files;  // rank 0's; removed when this function returns or throws
  core::ProblemList created(core::ErrorKind::kIo);
  std::string tokens;
  if (rank == 0) {
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
    auto problem = read_back(dir, line.substr(0, space), line.substr(space + 1), hosts);
    if (!problem.empty()) seen.add(std::move(problem));
  }
  // NOTE: rank 0 removes its files only after this agreement: every rank has read them.
  agree(group, seen, "checking that the directories are shared by every host");
}

void check_free_space(const runtime::Group& group, const fs::path& dir,
                      eplb::fs::SpaceNeeded needed, std::string_view what,
                      std::string_view remedy) {
  core::ProblemList problems(core::ErrorKind::kIo);
  if (core::log::is_leader()) {
    capture(problems, [&] { eplb::fs::require_free_space(dir, needed, what, remedy); });
  }
  agree(group, problems, "checking the free space");
}

}  // namespace eplb::job
