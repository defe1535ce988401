// Bounded, regular-file-only reads of small input files (eplb/core/input_file.hpp).
#include "eplb/core/input_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "eplb/core/error.hpp"
#include "eplb/core/fd.hpp"

namespace eplb::core {
namespace {

[[noreturn]] void fail(ErrorKind kind, const std::filesystem::path& path, std::string_view what,
                       const std::string& text) {
  throw Error(kind, quoted(path) + ": " + std::string(what) + " " + text);
}

}  // namespace

std::string read_input_file(const std::filesystem::path& path, std::string_view what,
                            size_t max_bytes) {
  const Fd fd = open_regular_file(path, what);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    fail(ErrorKind::kIo, path, what, std::string("cannot be examined: ") + std::strerror(errno));
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
