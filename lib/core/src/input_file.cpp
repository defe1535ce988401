// Bounded, regular-file-only reads of small input files (eplb/core/input_file.hpp).
#include "eplb/core/input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "eplb/core/error.hpp"

namespace eplb::core {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&&) = delete;
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

[[noreturn]] void fail(ErrorKind kind, const std::filesystem::path& path, std::string_view what,
                       const std::string& text) {
  throw Error(kind, "'" + path.string() + "': " + std::string(what) + " " + text);
}

}  // namespace

std::string read_input_file(const std::filesystem::path& path, std::string_view what,
                            size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer. The type check
  // below then refuses it.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) fail(ErrorKind::kInput, path, what, "does not exist");
    if (err == ENOTDIR) fail(ErrorKind::kInput, path, what, "has a parent that is not a directory");
    fail(ErrorKind::kIo, path, what, std::string("cannot be opened: ") + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    fail(ErrorKind::kIo, path, what, std::string("cannot be examined: ") + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    fail(ErrorKind::kInput, path, what,
         std::string("must be a regular file, but it is ") + kind_of(st.st_mode));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    fail(ErrorKind::kInput, path, what,
         "is " + std::to_string(size) + " bytes, above the limit of " + std::to_string(max_bytes) +
             " bytes for an input file");
  }
  std::string text(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n =
        ::pread(fd.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      fail(ErrorKind::kIo, path, what, std::string("cannot be read: ") + std::strerror(errno));
    if (n == 0) break;  // shrank while we read: take what is there
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

}  // namespace eplb::core
