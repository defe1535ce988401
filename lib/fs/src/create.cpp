// Safe creation of new files (eplb/fs/create.hpp).
#include "eplb/fs/create.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include "eplb/core/error.hpp"

namespace eplb::fs {

Created try_create_new_file(int dir_fd, const std::filesystem::path& name, int flags,
                            mode_t mode) noexcept {
  Created created;
  created.fd = core::Fd(::openat(
      dir_fd, name.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode));
  if (created.fd.empty()) created.error = errno;
  return created;
}

core::Fd create_new_file(int dir_fd, const std::filesystem::path& name, int flags, mode_t mode) {
  Created created = try_create_new_file(dir_fd, name, flags, mode);
  if (created.error == 0) return std::move(created.fd);
  throw core::Error(core::ErrorKind::kIo,
                    "cannot create " + core::quoted(name) + ": " +
                        (created.error == EEXIST ? std::string("the file already exists")
                                                 : std::string(std::strerror(created.error))));
}

}  // namespace eplb::fs
